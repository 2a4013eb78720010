"""Parameter-free ways of turning layer-wise embeddings into one feature vector.

Both estimators read the columns of :class:`~ecgsoup.LayerwiseEmbedder`'s
output through a :class:`~ecgsoup.layers.LayerSpec` (layer names, widths,
streams, the model's readout and id) and never run the backbone, so a grid
search over their parameters costs milliseconds.

The usual way is to let the embedder apply them::

    LayerwiseEmbedder(fusion=PPA())             # or LayerSelector(layers=6), PMA(...)

so that ``GridSearchCV`` searches ``{"embed__fusion": [...]}`` while the
backbone still runs once per record (with ``memory=``).  On their own, they
take the specification explicitly (``PPA(layer_spec=embedder.layer_spec_)``
or ``stored.layer_spec``); with ``layer_spec=None`` the input is read as
``n_layers`` equal blocks of raw numbers with no readout.

The readout is what the original model applies after pooling: ST-MEM's
pretrained final LayerNorm (``z = LN_enc(h_l)``), or nothing for models whose
layers are already normalised (HuBERT-ECG) and for CNNs.

The learned fusion (PMA, a per-record gate over the layers) is in :mod:`ecgsoup.pma`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ecgsoup.layers import LayerSpec, resolve_layers

__all__ = ["LayerSelector", "PPA"]

_LAYER_NAMES = {"all", "blocks", "last", "middle"}


# -- helpers shared with ecgsoup.pma -----------------------------------------------------
def _spec_for(estimator, X) -> LayerSpec:
    """The layer specification of ``X``: the given one, or ``n_layers`` equal raw blocks."""
    spec = estimator.layer_spec
    n_features = X.shape[1]
    name = type(estimator).__name__
    if spec is None:
        n_layers = estimator.n_layers
        if n_features < n_layers or n_features % n_layers:
            raise ValueError(
                f"{name}: X has {n_features} feature(s), which is not {n_layers} layer blocks of equal "
                "width. Put this step inside the embedder (LayerwiseEmbedder(fusion=...)), pass "
                "layer_spec=embedder.layer_spec_ (or stored.layer_spec), or set n_layers to the number "
                "of equal blocks in X."
            )
        return LayerSpec.equal_blocks(n_layers, n_features // n_layers)
    if not isinstance(spec, LayerSpec):
        raise TypeError(f"{name}: layer_spec must be a LayerSpec (embedder.layer_spec_), got {type(spec).__name__}.")
    if n_features != spec.n_features:
        raise ValueError(
            f"{name}: X has {n_features} columns but layer_spec describes {spec.n_features} "
            f"({len(spec.layers)} layers of {spec.model_name or 'the model'}). Feed that model's "
            "layer-wise embeddings, with the layers it was specified for."
        )
    _check_column_tags(estimator, spec)
    return spec


def _check_column_tags(estimator, spec: LayerSpec) -> None:
    """Refuse a frame whose columns name another model than ``spec`` (``<tag>:layer03_dim0000``)."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or not spec.model_id:
        return
    tags = {str(n).split(":", 1)[0] for n in names if ":" in str(n)}
    if tags and tags != {spec.tag}:
        raise ValueError(
            f"{type(estimator).__name__}: the columns of X come from model {', '.join(sorted(tags))}, "
            f"but layer_spec describes model {spec.tag} ({spec.model_name}). Use the specification "
            "of the model that produced X."
        )


def _same_stream(estimator, spec: LayerSpec, positions) -> None:
    """PPA and PMA average layers; refuse layers of different widths or representation spaces."""
    chosen = [spec.layers[p] for p in positions]
    widths = {layer.width for layer in chosen}
    streams = {layer.stream for layer in chosen}
    if len(widths) > 1 or len(streams) > 1:
        name = type(estimator).__name__
        width_text = "…".join(map(str, (min(widths), max(widths)))) if len(widths) > 1 else str(widths.pop())
        raise ValueError(
            f"{name} averages layers that live in one representation space (one residual stream). "
            f"The chosen layers of {spec.model_name or 'this model'} ({chosen[0].name} … {chosen[-1].name}) "
            f"are {width_text} wide, in {len(streams)} different bases; an average of them has no "
            f"meaning. Use LayerSelector(layers='all', balance=True) to use every layer, or "
            f"{name}(layers=[...]) with layers of one stream."
        )


def _check_input_features(estimator, input_features) -> None:
    """Validate ``input_features`` of ``get_feature_names_out`` against the fitted input."""
    if input_features is None:
        return
    input_features = np.asarray(input_features, dtype=object)
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None and not np.array_equal(input_features, names_in):
        raise ValueError("input_features is not equal to feature_names_in_.")
    if len(input_features) != estimator.n_features_in_:
        raise ValueError(
            f"input_features should have length equal to number of features "
            f"({estimator.n_features_in_}), got {len(input_features)}."
        )


def _fusion_names(prefix: str, dim: int) -> np.ndarray:
    return np.asarray([f"{prefix}_dim{d:04d}" for d in range(dim)], dtype=object)


_SPEC_CONSTRAINT = [HasMethods(["feature_names", "select"]), None]


class _LayerwiseTransformer(TransformerMixin, BaseEstimator):
    """Input validation and the layer specification common to the fusion transformers."""

    def _fit_spec(self, X):
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.layer_spec_ = _spec_for(self, X)
        return X

    def _transform_input(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X

    def _resolve(self, layers):
        spec = self.layer_spec_
        return resolve_layers(layers, len(spec.layers), [layer.name for layer in spec.layers])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Pure numpy on the input's own dtype: float32 embeddings stay float32.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class LayerSelector(_LayerwiseTransformer):
    """Pick one or more layers from layer-wise embeddings (by default through the model's readout).

    The cheap step that makes layer choice a hyperparameter: the backbone runs
    once, and ``GridSearchCV`` searches ``{"embed__fusion": [LayerSelector(layers=l)
    for l in range(1, 13)]}`` over the cached embeddings.  Selecting layer
    ``l`` gives ``z = readout(h_l)`` (for ST-MEM, its final LayerNorm); the
    default ``layers="last"`` is the usual last-layer baseline.  Layers of
    different widths (CNN stages) are concatenated; ``balance=True`` gives
    each of them the same total variance.

    Parameters
    ----------
    layers : int, str, list, slice or {"last", "middle", "all", "blocks"}, default="last"
        Layers to keep: indices (0 = the pre-block representation, negative
        from the end) or names (``"layer06"``, ``"stage5"``).  Several
        layers are concatenated in the given order.
    apply_readout : bool, default=True
        Pass each selected layer through the model's readout.  The readout
        is only defined for layers of the model's final width; for layers of
        another width (a CNN's earlier stages) it is skipped.
    balance : bool, default=False
        Standardise every selected layer (training statistics) and scale it
        to a total variance of 1, so that wide layers do not drown narrow
        ones in a penalised model.
    layer_spec : LayerSpec or None, default=None
        What the columns of X are (``embedder.layer_spec_``,
        ``stored.layer_spec``).  Set by :class:`~ecgsoup.LayerwiseEmbedder`
        when this step is its ``fusion``.  ``None``: X is ``n_layers`` equal
        blocks of raw numbers and no readout is applied.
    n_layers : int, default=13
        Number of equal blocks in X when ``layer_spec`` is None.

    Attributes
    ----------
    layers_ : tuple of int
        The selected layers, as positions in the input.
    layer_spec_ : LayerSpec
        The specification used (given, or equal raw blocks).
    mean_, scale_ : list of ndarray
        Per-layer standardisation and block factor (only with ``balance=True``).
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    PPA : Mean of the block outputs, then the readout.
    ecgsoup.pma.PMA : Learned per-sample mixture of layers.

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, LayerSelector, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()                      # 200 real LUDB recordings, 100 Hz
    >>> prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    >>> X = prep.fit_transform(ds.X[:4])
    >>> LayerwiseEmbedder(fusion=LayerSelector(layers=[6, -1])).fit_transform(X).shape
    (4, 384)
    """

    _parameter_constraints = {
        "layers": [Integral, str, "array-like", slice],
        "apply_readout": ["boolean"],
        "balance": ["boolean"],
        "layer_spec": _SPEC_CONSTRAINT,
        "n_layers": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, layers="last", apply_readout=True, balance=False, layer_spec=None, n_layers=13):
        self.layers = layers
        self.apply_readout = apply_readout
        self.balance = balance
        self.layer_spec = layer_spec
        self.n_layers = n_layers

    def fit(self, X, y=None):
        """Resolve the layer choice (and learn the balancing statistics).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings described by ``layer_spec``.
        y : None
            Ignored.

        Returns
        -------
        self : LayerSelector
        """
        X = self._fit_spec(X)
        self.layers_ = self._resolve(self.layers)
        if self.balance:
            self.mean_, self.scale_ = [], []
            for p in self.layers_:
                Z = self._readout(self.layer_spec_.block(X, p), p).astype(np.float64)
                std = Z.std(axis=0) if len(Z) > 1 else np.ones(Z.shape[1])
                std = np.where(std > 0, std, 1.0)
                total = float(((Z - Z.mean(axis=0)) / std).var(axis=0).sum()) if len(Z) > 1 else 1.0
                self.mean_.append(Z.mean(axis=0))
                self.scale_.append(std * np.sqrt(total if total > 0 else 1.0))
        return self

    def _readout(self, Z, position):
        spec = self.layer_spec_
        readout = spec.readout
        if not self.apply_readout or readout.kind == "identity":
            return Z
        if readout.weight is not None and Z.shape[1] != len(readout.weight):
            return Z  # the readout belongs to the final width only
        return readout(Z)

    def transform(self, X):
        """Return the selected layers, concatenated.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, sum of the selected widths)
        """
        X = self._transform_input(X)
        spec = self.layer_spec_
        parts = []
        for i, p in enumerate(self.layers_):
            Z = self._readout(spec.block(X, p), p)
            if self.balance:
                Z = ((Z - self.mean_[i]) / self.scale_[i]).astype(X.dtype, copy=False)
            parts.append(Z)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def get_feature_names_out(self, input_features=None):
        """Names like ``layer06_dim0003`` for each output column."""
        check_is_fitted(self)
        _check_input_features(self, input_features)
        return self.layer_spec_.feature_names(self.layers_)


class PPA(_LayerwiseTransformer):
    """Post-pretraining Pooling-based Aggregation (PPA), as defined by ECG-Soup.

    ``z = readout((1 / L) * sum_{l=1..L} h_l)``: the uniform mean of the block
    outputs (layer 0, the pre-block representation, is excluded), then the
    model's readout (for ST-MEM its final LayerNorm, ``LN_enc``).  No
    parameters are learned.  Only layers of one representation space (one
    residual stream, one width) can be averaged; for a CNN whose stages
    differ, PPA refuses and names the alternative.

    Parameters
    ----------
    layers : str, list or slice, default="blocks"
        Layers to average (``"blocks"``: 1..L).
    layer_spec : LayerSpec or None, default=None
        What the columns of X are; set by the embedder when PPA is its
        ``fusion``.  ``None``: ``n_layers`` equal raw blocks, no readout.
    n_layers : int, default=13
        Number of equal blocks in X when ``layer_spec`` is None; at least 2.

    Attributes
    ----------
    layers_ : tuple of int
        The averaged layers, as positions in the input.
    layer_spec_ : LayerSpec
        The specification used.
    dim_ : int
        Width of the output.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    LayerSelector : A single layer (or several, concatenated).
    ecgsoup.pma.PMA : Learned per-sample weights instead of the uniform mean.

    Examples
    --------
    >>> from ecgsoup import PPA, ECGPreprocessor, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()
    >>> X = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names).fit_transform(ds.X[:4])
    >>> LayerwiseEmbedder(fusion=PPA()).fit_transform(X).shape
    (4, 192)
    """

    _parameter_constraints = {
        "layers": [str, "array-like", slice],
        "layer_spec": _SPEC_CONSTRAINT,
        "n_layers": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(self, layers="blocks", layer_spec=None, n_layers=13):
        self.layers = layers
        self.layer_spec = layer_spec
        self.n_layers = n_layers

    def fit(self, X, y=None):
        """Resolve and check the averaged layers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings described by ``layer_spec``.
        y : None
            Ignored.

        Returns
        -------
        self : PPA
        """
        self._fit_spec(X)
        self.layers_ = self._resolve(self.layers)
        _same_stream(self, self.layer_spec_, self.layers_)
        self.dim_ = self.layer_spec_.layers[self.layers_[0]].width
        return self

    def transform(self, X):
        """Return ``readout(mean of the chosen layers)``, shape ``(n_samples, dim_)``."""
        X = self._transform_input(X)
        spec = self.layer_spec_
        mean = spec.block(X, self.layers_[0]).astype(X.dtype, copy=True)
        for p in self.layers_[1:]:
            mean += spec.block(X, p)
        mean /= np.asarray(len(self.layers_), dtype=X.dtype)
        return spec.readout(mean)

    def get_feature_names_out(self, input_features=None):
        """Names ``ppa_dim0000``, ``ppa_dim0001``, ..."""
        check_is_fitted(self)
        _check_input_features(self, input_features)
        return _fusion_names("ppa", self.dim_)
