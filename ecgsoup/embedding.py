"""Every layer of a frozen ECG foundation model as scikit-learn features.

:class:`LayerwiseEmbedder` runs the backbone once per record and returns the
pooled output of *all* its layers side by side, described by a
:class:`~ecgsoup.layers.LayerSpec`.  Choosing layers, averaging them (PPA) or
mixing them (PMA) is its ``fusion`` parameter, applied after the cached
embeddings, so a grid search over those choices never runs the backbone again;
with ``memory=`` the embeddings of each record are cached (see
:mod:`ecgsoup.cache`), so even the folds of a cross-validation share one
backbone pass.
"""

from __future__ import annotations

import functools
import json
import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from ecgsoup._data_shaped import pads_batches
from ecgsoup._model_cache import bfloat16_copy, config_dict, resolve_model
from ecgsoup._sklearn_compat import HasMethods, Interval, StrOptions, check_feature_names_in
from ecgsoup.backbones import Backbone
from ecgsoup.cache import EmbeddingCache, caching_enabled, context_key, record_keys
from ecgsoup.hardware import check_device, warn_if_bf16_emulated
from ecgsoup.layers import LayerSpec, resolve_layers
from ecgsoup.recipes import apply_window_norm, window_transform
from ecgsoup.signal import ZSCORE_EPS, check_finite, window_starts

__all__ = ["LayerwiseEmbedder"]

# New embeddings are stored after every this many forward batches, so an interrupted run
# loses at most that much work (128 records at the default batch of 16).
_STORE_EVERY_BATCHES = 8

# Version of the numbers an embedder returns for a model and record (windowing,
# pooling, normalisation); part of every cache key, so that a change to any of
# them misses the cache instead of returning stale embeddings.
_EMBEDDING_FORMAT = 2


class LayerwiseEmbedder(TransformerMixin, BaseEstimator):
    """Pooled embeddings of every layer of a frozen ECG foundation model.

    One forward pass per batch yields all layers ``h_0 .. h_L`` of the
    backbone (for ST-MEM: the token embedding and the 12 blocks, each the mean
    over patch tokens; for HuBERT-ECG: the embedding and every transformer
    layer, each the mean over frames; for ECGFounder: the stem and the 7
    stages, each globally averaged).  Rows are ``[h_l for l in layers]``; the
    fitted ``layer_spec_`` says which columns belong to which layer, how wide
    each is, and what the model applies after pooling (its readout).

    With ``fusion=`` (a :class:`~ecgsoup.LayerSelector`, :class:`~ecgsoup.PPA`
    or :class:`~ecgsoup.PMA`), the embedder applies it to the pooled layers
    and returns the fused features: ``GridSearchCV(pipe, {"embed__fusion":
    [...]})`` then compares layer choices and fusions while the backbone runs
    once per record (with ``memory=``).

    ``fit`` learns nothing from the data unless a fusion that learns (PMA) is
    given: it loads the model and checks that ``X`` has the shape the model
    needs.  Embedding before cross-validation therefore leaks nothing.

    Parameters
    ----------
    model : str, path or Backbone, default="default"
        ``"default"``: the bundled pretrained model.  A registered name
        (``"hubert-ecg-small"``, ``"ecgfounder-12lead"``; weights the user
        downloaded into ``$ECGSOUP_MODEL_HOME/<name>/``), an ecgsoup model
        directory, ``"<family>:<path>"`` for an original file or folder
        (``"hubert-ecg:/models/hubert-ecg-small"``, ``"ecgfounder:12_lead_ECGFounder.pth"``),
        or a plain path to an original ST-MEM ``.pth`` file.  Any of these
        may end in ``@<contract>`` to choose a named input contract.
        ``"random:<name>"`` (e.g. ``"random:ecgsoup-100hz-tiny"``,
        ``"random:hubert-ecg-small"``): an **untrained**, randomly initialised
        model of that architecture (seed 0), as a baseline or for tests.
        ``"random"``: an untrained tiny ST-MEM shaped by the data (see
        "Data-shaped random model" below).  A backbone module is used as is
        (it is never modified).  ``ecgsoup.list_backbones()`` lists the names.
        Weights are loaded in ``fit``, strictly, and their sha256 is recorded.
    layers : "all", int, str, list, slice or {"blocks", "last", "middle"}, default="all"
        Layers to return (indices or names).  Keep ``"all"`` and choose
        layers with ``fusion``: that is what lets a grid search over layers
        reuse one backbone pass.
    fusion : LayerSelector, PPA, PMA or None, default=None
        Applied to the pooled layers (a clone is fitted, with
        ``layer_spec=layer_spec_``).  ``None``: the layers themselves are
        returned.
    batch_size : int, default=16
        Windows per forward pass.  Memory grows with the batch, not with
        the number of records.  Does not change the result.  On a 2-core
        CPU, 4 to 16 windows per pass are fastest for the tiny and base
        models in float32 and bfloat16; 64 is 10 to 25 % slower (its
        activations do not fit in the processor's cache).
    device : str, default="cpu"
        Where the encoder runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    precision : {"float32", "bfloat16"}, default="float32"
        ``"bfloat16"`` runs a bfloat16 copy of the encoder (made once per
        model and device and shared within the process; ``model_`` and an
        encoder you pass stay float32).  LayerNorms keep float32 weights and
        normalise in float32 internally.  Faster on CPUs with bf16 matrix
        units and on recent GPUs; cosine similarity to float32 about 0.9999
        per layer.  The output is float32 either way.  On a CPU without bf16
        instructions (x86 without AVX-512 BF16 or AMX) torch emulates it,
        many times slower than float32: ``fit`` then warns
        (:class:`ecgsoup.hardware.SlowPrecisionWarning`).
    window_stride : int, default=None
        Step between windows, in samples, for records longer than the
        model's window; ``None`` means half a window (the ECG-Soup code's
        evaluation setting).  At most one window.
    memory : None, str, path or joblib.Memory, default=None
        Cache the embeddings of each record (keyed on a hash of its samples,
        the model's fingerprint, the ecgsoup version, ``precision`` and the
        window settings), in a folder and in an in-process memo; used by
        ``fit_transform`` and ``transform``.  ``None``: no caching.
        ``device``, ``batch_size`` and ``verbose`` are not part of the key:
        they do not change the result beyond floating-point rounding.
    verbose : int, default=0
        ``> 0`` shows a progress bar over batches (on stderr).

    Attributes
    ----------
    model_ : Backbone
        The backbone, on ``device``, in eval mode.  Shared with other
        embedders of the same process that load the same source: do not
        modify it.
    contract_ : InputContract
        The input the model expects: sampling rate, window, lead names,
        recipe and window normalisation.
    layer_spec_ : LayerSpec
        The returned layers: names, widths, streams, readout and model id.
    fusion_ : estimator or None
        The fitted clone of ``fusion``.
    n_layers_ : int
        Layers the model emits.
    dim_ : int or None
        Width of one layer when all layers have the same width.
    layers_ : tuple of int
        The returned layers as absolute indices.
    window_stride_ : int
        The stride used.
    fingerprint_ : str
        sha256 identifying the weights: the weights file's hash for models
        loaded from disk; a hash of the configuration and tensors for random
        models and module objects.
    n_features_in_ : int
        Columns of the flat input, or leads of 3-D input.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    ecgsoup.preprocessing.ECGPreprocessor : Turns recordings into the input
        this estimator expects.
    ecgsoup.fusion.LayerSelector, ecgsoup.fusion.PPA, ecgsoup.pma.PMA : Fusions.

    Notes
    -----
    **Input.** The model-ready array of ``ECGPreprocessor``: flat and
    lead-major, ``(n_records, n_leads * T)`` (all samples of the first lead,
    then the second, ...), or 3-D ``(n_records, n_leads, T)``; leads in the
    model's order (``contract_.lead_names``), at its sampling rate, with
    ``T >= contract_.window``.  Flat input's width is fixed at ``fit``;
    with 3-D input ``n_features_in_`` is the number of leads and ``T`` may
    differ between calls.

    **Windows.** A record longer than the model's window is cut into windows
    of ``contract_.window`` samples every ``window_stride_`` samples, plus
    one window flush with the record's end if the stride does not reach it.
    Every window is normalised as the contract says (ST-MEM: z-scored per
    lead over time, ddof 0, ``+1e-8``, as ECG-Soup does), and a record's
    embedding is the mean of its windows' pooled embeddings, per layer (the
    readout, applied by the fusion, comes after the mean).

    **Data-shaped random model.** With ``model="random"``, input that does not
    fit the 12-lead, 1000-sample contract gets a randomly initialised tiny
    encoder built for it at ``fit``: a flat ``(n, F)`` array is read as one
    lead of ``F`` samples (unless ``F`` splits into 12 leads of at least 1000
    samples), 3-D ``(n, C, T)`` as ``C`` leads; the window is
    ``min(T, 1000)`` samples and the patch the largest divisor of it up to
    50.  This keeps the estimator testable on generic data (as
    ``parametrize_with_checks`` does); it has no medical meaning.
    Named models, including ``"random:<name>"``, never change shape: input
    that does not fit them raises an error.

    Examples
    --------
    >>> import numpy as np
    >>> from ecgsoup import PPA, LayerwiseEmbedder
    >>> X = np.random.default_rng(0).normal(size=(2, 12 * 1000)).astype("float32")
    >>> emb = LayerwiseEmbedder(model="random:ecgsoup-100hz-tiny").fit(X)
    >>> emb.transform(X).shape                   # 13 layers, 192 wide
    (2, 2496)
    >>> emb.get_feature_names_out()[[0, -1]].tolist()
    ['layer00_dim0000', 'layer12_dim0191']
    >>> LayerwiseEmbedder(model="random:ecgsoup-100hz-tiny", fusion=PPA()).fit_transform(X).shape
    (2, 192)
    """

    _parameter_constraints = {
        "model": [str, os.PathLike, Backbone],
        "layers": [Integral, str, "array-like", slice],
        "fusion": [HasMethods(["fit", "transform"]), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"float32", "bfloat16"})],
        "window_stride": [Interval(Integral, 1, None, closed="left"), None],
        "memory": [None, str, os.PathLike, HasMethods("cache")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model="default",
        layers="all",
        fusion=None,
        batch_size=16,
        device="cpu",
        precision="float32",
        window_stride=None,
        memory=None,
        verbose=0,
    ):
        self.model = model
        self.layers = layers
        self.fusion = fusion
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.window_stride = window_stride
        self.memory = memory
        self.verbose = verbose

    # -- sklearn API ------------------------------------------------------------------
    def fit(self, X, y=None):
        """Load the model and check that ``X`` fits it; fit the fusion, if any.

        Parameters
        ----------
        X : array-like of shape (n_records, n_leads * T) or (n_records, n_leads, T)
            Model-ready ECG (see Notes of the class).
        y : array-like or None
            Passed to the fusion (PMA needs it); ignored otherwise.

        Returns
        -------
        self : LayerwiseEmbedder
        """
        records = self._load_model_and_validate(X)
        if self.fusion is not None:
            self._fit_fusion(self._embed(records), y)
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return the embeddings (or fused features) of ``X`` (validated once).

        Parameters
        ----------
        X : array-like of shape (n_records, n_leads * T) or (n_records, n_leads, T)
            Model-ready ECG.
        y : array-like or None
            Passed to the fusion (PMA needs it); ignored otherwise.

        Returns
        -------
        E : ndarray of shape (n_records, n_features), float32
            ``layer_spec_.n_features`` columns, or the fusion's output.
        """
        # With a cache, only records not found in it are checked for NaN/inf
        # (in _pooled_records): a cached record was checked when it was embedded.
        E = self._embed(self._load_model_and_validate(X, refuse_nonfinite=not self._caching()))
        if self.fusion is None:
            return E
        return self._fit_fusion(E, y, transform=True)

    def transform(self, X):
        """Embed every record: the pooled output of each chosen layer, or the fused features.

        Parameters
        ----------
        X : array-like of shape (n_records, n_leads * T) or (n_records, n_leads, T)
            Model-ready ECG, in the same layout as at ``fit``.

        Returns
        -------
        E : ndarray of shape (n_records, n_features), float32
        """
        check_is_fitted(self)
        E = self._embed(self._check_X(X, reset=False))
        return E if self.fusion_ is None else self.fusion_.transform(E)

    def transform_layers(self, X):
        """The pooled layers of every record, before the fusion: ``layer_spec_`` describes the columns.

        Equal to :meth:`transform` when ``fusion`` is None.

        Parameters
        ----------
        X : array-like of shape (n_records, n_leads * T) or (n_records, n_leads, T)
            Model-ready ECG, in the same layout as at ``fit``.

        Returns
        -------
        E : ndarray of shape (n_records, layer_spec_.n_features), float32
        """
        check_is_fitted(self)
        return self._embed(self._check_X(X, reset=False))

    def get_feature_names_out(self, input_features=None):
        """Column names: ``layer03_dim0127`` ... (or the fusion's, e.g. ``ppa_dim0000``).

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Only checked against the input seen at ``fit``; the output names
            do not depend on it.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        if self.fusion_ is not None:
            return self.fusion_.get_feature_names_out()
        return self.layer_spec_.feature_names()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # (n, leads, T) arrays are accepted besides the flat layout.
        tags.input_tags.three_d_array = True
        # The encoder computes in float32 and always returns float32.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- fitting ----------------------------------------------------------------------
    def _load_model_and_validate(self, X, refuse_nonfinite: bool = True) -> np.ndarray:
        self._validate_params()
        device = check_device(self.device)
        warn_if_bf16_emulated(self.precision, device, "LayerwiseEmbedder")
        X = self._validate_input(X, reset=True, refuse_nonfinite=refuse_nonfinite)
        backbone, fingerprint = resolve_model(self.model, device, X.shape)
        contract = backbone.contract
        self.model_ = backbone
        self.contract_ = contract
        self.config_ = backbone.config
        layers = backbone.layers
        self.n_layers_ = len(layers)
        widths = {layer.width for layer in layers}
        self.dim_ = widths.pop() if len(widths) == 1 else None
        self.fingerprint_ = fingerprint
        self.layers_ = resolve_layers(self.layers, self.n_layers_, [layer.name for layer in layers])
        name = backbone.card.name if backbone.card is not None else type(backbone).__name__
        full = LayerSpec(fingerprint, layers, backbone.readout(), name)
        self._full_spec = full
        self.layer_spec_ = full.select(self.layers_)
        self.fusion_ = None
        window = contract.window
        default_stride = contract.stride or window // 2
        stride = default_stride if self.window_stride is None else self.window_stride
        if stride > window:
            raise ValueError(
                f"window_stride={stride} is longer than the model's window "
                f"({window} samples): samples between windows would be skipped. "
                f"Use a stride of at most {window}."
            )
        self.window_stride_ = max(int(stride), 1)
        return self._as_records(X)

    def _fit_fusion(self, E, y, transform=False):
        fusion = clone(self.fusion)
        if "layer_spec" not in fusion.get_params():
            raise TypeError(
                f"fusion={type(fusion).__name__} takes no layer_spec; pass LayerSelector, PPA or PMA "
                "(or put your own step after the embedder in a Pipeline)."
            )
        fusion.set_params(layer_spec=self.layer_spec_)
        self.fusion_ = fusion
        if transform:
            return fusion.fit_transform(E, y) if y is not None else fusion.fit_transform(E)
        fusion.fit(E, y) if y is not None else fusion.fit(E)
        return None

    def _check_X(self, X, reset: bool) -> np.ndarray:
        checked = self._validate_input(X, reset=reset, refuse_nonfinite=not self._caching())
        return self._as_records(checked)

    def _memory(self):
        memory = self.memory
        if isinstance(memory, os.PathLike):
            memory = os.fspath(memory)  # check_memory takes str, not Path
        return check_memory(memory)

    def _caching(self) -> bool:
        return caching_enabled(self._memory())

    def _validate_input(self, X, reset: bool, refuse_nonfinite: bool = True) -> np.ndarray:
        from ecgsoup.signal import check_not_ragged

        check_not_ragged(X)
        X = validate_data(
            self,
            X,
            reset=reset,
            allow_nd=True,
            dtype=[np.float32, np.float64],
            ensure_all_finite=False,  # checked below, with an ECG-specific message
        )
        if X.ndim not in (2, 3):
            raise ValueError(
                f"X has shape {X.shape}; expected (n_records, n_leads * T) "
                "or (n_records, n_leads, T)."
            )
        if X.ndim == 3 and X.shape[2] == 0:
            raise ValueError(f"X has shape {X.shape}: records with 0 samples cannot be embedded.")
        if refuse_nonfinite:
            check_finite(X)
        return X

    def _as_records(self, X: np.ndarray) -> np.ndarray:
        """``(n, leads, T)`` float32 view/copy of validated ``X``, checked against the model."""
        contract = self.contract_
        n_leads, n_samples = contract.n_leads, contract.window
        name = self.layer_spec_.model_name
        hint = (
            f"The model ({name}) expects {n_leads} leads in the order "
            f"{', '.join(contract.lead_names)}, at {contract.sampling_rate:g} Hz, at least "
            f"{n_samples} samples ({contract.seconds:g} s) per lead, as the flat lead-major "
            f"array (n_records, {n_leads} * T) or as (n_records, {n_leads}, T). "
            "ecgsoup.ECGPreprocessor(model=...) produces this from recordings."
        )
        if X.ndim == 2:
            if X.shape[1] % n_leads:
                raise ValueError(
                    f"X has {X.shape[1]} columns, which is not {n_leads} leads of equal length. "
                    + hint
                )
            from ecgsoup.signal import flat_layout

            if flat_layout(X, n_leads) == "time-major":
                raise ValueError(
                    f"X (flat, {X.shape[1]} columns) looks time-major: every lead at one instant, then the "
                    "next instant, as recordings are read. LayerwiseEmbedder takes the model-ready lead-major "
                    "array: pass the recordings through ecgsoup.ECGPreprocessor(model=...) first, or reorder a "
                    f"time-major X with X.reshape(n, -1, {n_leads}).transpose(0, 2, 1). " + hint
                )
            X = X.reshape(X.shape[0], n_leads, X.shape[1] // n_leads)
        elif X.shape[1] != n_leads:
            raise ValueError(f"X has {X.shape[1]} leads. " + hint)
        if X.shape[2] < n_samples:
            raise ValueError(f"X has {X.shape[2]} samples per lead. " + hint)
        return np.ascontiguousarray(X, dtype=np.float32)

    # -- embedding --------------------------------------------------------------------
    def _embed(self, X: np.ndarray) -> np.ndarray:
        """Pooled layers of every record (cached), restricted to the chosen layers."""
        n = X.shape[0]
        full = self._full_spec
        layers = list(self.layers_)
        if layers == list(range(self.n_layers_)):
            # Every layer, in order (the default): the pooled layers are written
            # straight into the output, so no second (n, features) copy exists.
            E = np.empty((n, full.n_features), dtype=np.float32)
            self._pooled_records(X, out=E)
            return E
        pooled = self._pooled_records(X)
        E = np.empty((n, self.layer_spec_.n_features), dtype=np.float32)
        column = 0
        for layer in layers:  # one block at a time: no fancy-index copy
            block = full.block(pooled, layer)
            E[:, column : column + block.shape[1]] = block
            column += block.shape[1]
        del pooled
        return E

    def _pooled_records(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Pooled layers ``(n, features)`` float32 of every record, written into ``out``."""
        pooled = out if out is not None else np.empty((X.shape[0], self._full_spec.n_features), np.float32)
        cache = EmbeddingCache(self._memory(), self._cache_context())
        if not cache.enabled:
            self._forward_records(X, out=pooled)
            return pooled
        keys = record_keys(X)
        found = cache.get_many(keys)
        for position, value in found.items():
            pooled[position] = value
        # Distinct missing records only: a record present twice is embedded once.
        first = {}
        for position, key in enumerate(keys):
            if position not in found:
                first.setdefault(key, position)
        if first:
            misses = np.fromiter(first.values(), dtype=np.intp, count=len(first))
            missing_keys = list(first)
            # Stored a part at a time: a run that is stopped keeps what it embedded (the rerun
            # resumes there), and only one part of the missing records is copied at once.
            windows = len(window_starts(X.shape[2], self.contract_.window, self.window_stride_))
            step = max(1, _STORE_EVERY_BATCHES * self.batch_size // windows)
            for start in range(0, len(misses), step):
                part = misses[start : start + step]
                missing = X[part]
                check_finite(missing, positions=part)  # hits were checked when first embedded
                by_key = dict(zip(missing_keys[start : start + step], self._forward_records(missing)))
                cache.put_many(by_key)
                for key, value in by_key.items():
                    pooled[first[key]] = value
            for position, key in enumerate(keys):
                if position not in found and position != first[key]:
                    pooled[position] = pooled[first[key]]  # a record present twice: embedded once
        return pooled

    def _cache_context(self) -> str:
        from ecgsoup._version import __version__

        # Keyed on the family, the architecture's full JSON and the contract
        # (recipe and window normalisation included): the same weights under
        # another contract give other numbers.
        backbone = self.model_
        config = json.dumps(
            {"family": backbone.family, "arch": config_dict(backbone.config),
             "contract": self.contract_.to_dict()},
            sort_keys=True, default=str,
        )
        return _context_of(
            self.fingerprint_, config, self.contract_.window, __version__, self.precision,
            self.window_stride_,
        )

    def _forward_records(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Mean pooled layers over each record's windows, ``(n, features)`` float32.

        Written into ``out`` (allocated if ``None``), which is returned.
        """
        contract = self.contract_
        window = contract.window
        starts = window_starts(X.shape[2], window, self.window_stride_)
        n_windows = len(starts)
        total = X.shape[0] * n_windows
        shape = (X.shape[0], self._full_spec.n_features)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        # One window per record (the usual 10 s case): each window's result is
        # the record's embedding and goes straight into `out`.  Otherwise the
        # windows are summed in float64 (in order, whatever the batch size) and
        # divided in place; only that one extra (n, features) buffer exists.
        sums = None if n_windows == 1 else np.zeros(shape, dtype=np.float64)
        device = torch.device(self.device)
        encoder = self._forward_model()
        dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float32
        transform = window_transform(contract.window_transform)
        # Toy shapes (the data-shaped random model) need every batch padded to
        # `batch_size` windows for batch-size invariant numbers; see pads_batches.
        pad_batches = pads_batches(self.config_)
        from tqdm.auto import tqdm

        batches = range(0, total, self.batch_size)
        progress = tqdm(total=len(batches), disable=not self.verbose, desc="embedding")
        with progress as bar:
            for first in batches:
                index = np.arange(first, min(first + self.batch_size, total))
                records, offsets = index // n_windows, starts[index % n_windows]
                # Fancy indexing copies, so the tensor never aliases a read-only memmap.
                batch = np.stack([X[r, :, s : s + window] for r, s in zip(records, offsets)])
                batch = apply_window_norm(batch, contract.window_norm)
                if transform is not None:
                    batch = np.ascontiguousarray(transform(batch), dtype=np.float32)
                if pad_batches and len(batch) < self.batch_size:
                    padding = np.zeros((self.batch_size - len(batch), *batch.shape[1:]), np.float32)
                    batch = np.concatenate([batch, padding])
                with torch.inference_mode():
                    pooled = encoder.pooled_layers(torch.from_numpy(batch).to(device, dtype))
                pooled = pooled[: len(index)].reshape(len(index), -1).float().cpu().numpy()
                if sums is None:
                    out[first : first + len(index)] = pooled  # window index = record index
                else:
                    np.add.at(sums, records, pooled)
                bar.update()
        if sums is not None:
            sums /= n_windows
            out[...] = sums
        return out

    def _forward_model(self) -> Backbone:
        """The module the forward pass runs: ``model_``, or its cached bfloat16 copy."""
        if self.precision != "bfloat16":
            return self.model_
        return bfloat16_copy(self.model_, self.fingerprint_)


@functools.lru_cache(maxsize=64)
def _context_of(
    fingerprint: str, config: str, window: int, version: str, precision: str, stride: int
) -> str:
    """The cache context of an embedder's settings (memoised: a grid search asks ~120 times).

    ``config`` is the configuration as JSON text; it enters the context as the same dict.
    """
    return context_key(
        fingerprint=fingerprint,
        config=json.loads(config),
        ecgsoup=version,
        embedding_format=_EMBEDDING_FORMAT,
        precision=precision,
        # bfloat16 runs a bfloat16 copy of the weights, whose numbers differ
        # from bfloat16 autocast; the mode is part of the key so that entries
        # written under autocast are never returned (float32 keys carry no mode).
        **({"bfloat16_mode": "weights"} if precision == "bfloat16" else {}),
        window=window,
        stride=stride,
        zscore_eps=ZSCORE_EPS,
    )
