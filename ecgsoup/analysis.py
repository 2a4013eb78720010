"""Layer analyses of the frozen encoder, each with a plot.

Two kinds of input are used:

* **layer-wise embeddings** ``X_layers``: the 2-D output of
  ``ecgsoup.LayerwiseEmbedder`` (``[h_0 | ... | h_L]``,
  described by its ``layer_spec_``), or a 3-D array ``(n, L+1, D)`` such as
  ``encoder.pooled_layers(x)``.  Used by :func:`layer_cosine_similarity`,
  :func:`linear_cka` and :func:`gate_weight_distribution`.
* **an encoder and model-ready signals** ``x``: ``(n, leads, T)`` windows of
  exactly the model's ``n_samples``, leads in the model's order, z-scored per
  lead (:func:`ecgsoup.signal.zscore`), or the flat ``(n, leads * T)``
  lead-major array of ``ECGPreprocessor``.  Used by
  :func:`token_cosine_similarity` and :func:`attention_entropy`, which need
  the tokens or attention maps.  They run batch by batch, so memory grows
  with ``batch_size``, not with the number of records.

Every analysis returns plain numpy / pandas data; the ``plot_*`` functions
draw it with matplotlib (no pyplot state, so they work under any backend,
including Agg on a server), return the ``Figure`` and save a PNG when given
``path``.

Layer numbering follows the encoder: layer 0 is the token embedding, layer
``l`` (1..L) the output of block ``l``.  Attention of "layer ``l``" is the
attention computed inside block ``l``.

The ECG-Soup paper's exact analysis definitions are not public; these are
common definitions of each analysis.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ecgsoup.layers import LayerSpec

__all__ = [
    "layer_cosine_similarity",
    "token_cosine_similarity",
    "linear_cka",
    "attention_entropy",
    "gate_weight_distribution",
    "plot_similarity_matrix",
    "plot_attention_entropy",
    "plot_gate_weights",
]



# -- layer-wise embeddings ----------------------------------------------------------
def _check_positive_int(value, name: str, hint: str = "") -> int:
    """``value`` as an int, or a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}; expected a positive int{hint}.")
    return int(value)


def _layer_blocks(X_layers, n_layers: int, layer_spec, *, min_samples: int = 1) -> np.ndarray:
    """Validate ``X_layers`` and return the pooled layers as ``(n, n_layers, dim)`` float64."""
    if layer_spec is not None:
        if not isinstance(layer_spec, LayerSpec):
            raise TypeError(f"layer_spec must be a LayerSpec (embedder.layer_spec_), got {type(layer_spec).__name__}.")
        if len(set(layer_spec.widths)) != 1:
            raise ValueError(
                f"The layers of {layer_spec.model_name or 'this model'} differ in width "
                f"({min(layer_spec.widths)}..{max(layer_spec.widths)}); this analysis compares "
                "layers of one width. Pass the layers of one stage."
            )
        n_layers = len(layer_spec.layers)
    n_layers = _check_positive_int(n_layers, "n_layers", " (13 for a 12-block ST-MEM)")
    X = check_array(
        X_layers, allow_nd=True, dtype=np.float64, ensure_min_samples=min_samples,
        input_name="X_layers",
    )
    if X.ndim == 3:
        if X.shape[1] != n_layers:
            raise ValueError(
                f"X_layers has shape {X.shape}, i.e. {X.shape[1]} layers, but n_layers={n_layers}. "
                f"Pass n_layers={X.shape[1]} for a (records, layers, dim) array."
            )
        return X
    if X.ndim != 2:
        raise ValueError(
            f"X_layers has {X.ndim} dimensions; expected the 2-D output of LayerwiseEmbedder "
            "or a 3-D (records, layers, dim) array."
        )
    if layer_spec is not None and X.shape[1] != layer_spec.n_features:
        raise ValueError(
            f"X_layers has {X.shape[1]} columns but layer_spec describes {layer_spec.n_features} "
            f"({n_layers} layers of {layer_spec.model_name or 'the model'}). Pass that model's "
            "layer-wise embeddings, every layer."
        )
    if X.shape[1] % n_layers:
        raise ValueError(
            f"X_layers has {X.shape[1]} columns, which is not {n_layers} layer blocks of equal width. "
            "Pass layer_spec=embedder.layer_spec_ (or stored.layer_spec), or the right n_layers."
        )
    return np.ascontiguousarray(X.reshape(X.shape[0], n_layers, -1))


def layer_cosine_similarity(X_layers, n_layers: int = 13, *, layer_spec=None) -> np.ndarray:
    """Cross-layer cosine similarity of pooled embeddings.

    ``S[l, m]`` is the mean over records of ``cos(h_l(x), h_m(x))``.  The
    adjacent-layer curve ``cos(h_l, h_{l+1})`` is ``np.diag(S, 1)``.

    Parameters
    ----------
    X_layers : array-like of shape (n_records, n_features) or (n_records, n_layers, dim)
        Output of ``LayerwiseEmbedder`` (all layers) or pooled layers.
    n_layers : int, default=13
        Number of layer blocks in ``X_layers`` (embedding + 12 blocks).
    layer_spec : LayerSpec or None, default=None
        What the columns are (``embedder.layer_spec_``); overrides
        ``n_layers``.  The raw ``h_l`` are compared (no readout).

    Returns
    -------
    similarity : ndarray of shape (n_layers, n_layers)
        Symmetric, 1 on the diagonal (0 for a record whose ``h_l`` is all zeros).

    Examples
    --------
    >>> import numpy as np
    >>> H = np.random.default_rng(0).normal(size=(5, 3, 4))
    >>> layer_cosine_similarity(H, n_layers=3).shape
    (3, 3)
    """
    H = _layer_blocks(X_layers, n_layers, layer_spec)
    lengths = np.linalg.norm(H, axis=-1, keepdims=True)
    units = H / np.maximum(lengths, np.finfo(np.float64).tiny)
    similarity = np.einsum("nld,nmd->lm", units, units) / H.shape[0]
    return (similarity + similarity.T) / 2  # exact symmetry despite rounding


def _cka_by_gram(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSIC numerators via record Gram matrices: cheap when records < dim."""
    grams = np.einsum("lnd,lmd->lnm", centred, centred)  # (L, n, n)
    flat = grams.reshape(grams.shape[0], -1)
    cross = flat @ flat.T  # <K_l, K_m>_F = ||X_l^T X_m||_F^2
    return cross, np.sqrt(np.diag(cross))


def _cka_by_features(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSIC numerators via feature cross-products: memory O(dim^2), any number of records."""
    n_layers = centred.shape[0]
    cross = np.empty((n_layers, n_layers))
    for a in range(n_layers):
        for b in range(a, n_layers):
            value = np.sum((centred[a].T @ centred[b]) ** 2)
            cross[a, b] = cross[b, a] = value
    return cross, np.sqrt(np.diag(cross))


def linear_cka(X_layers, n_layers: int = 13, *, layer_spec=None) -> np.ndarray:
    """Linear centred kernel alignment between every pair of layers.

    For the record-by-feature matrices ``X_l`` (columns centred over records),
    ``CKA(l, m) = ||X_l^T X_m||_F^2 / (||X_l^T X_l||_F ||X_m^T X_m||_F)``
    (Kornblith et al., 2019).  It is invariant to orthogonal transforms and
    isotropic scaling of either layer, not to arbitrary linear maps.

    Parameters
    ----------
    X_layers : array-like of shape (n_records, n_features) or (n_records, n_layers, dim)
        Output of ``LayerwiseEmbedder`` (all layers) or pooled layers; at
        least 2 records (CKA compares variation across records).
    n_layers : int, default=13
        Number of layer blocks in ``X_layers``.
    layer_spec : LayerSpec or None, default=None
        What the columns are (``embedder.layer_spec_``); overrides ``n_layers``.

    Returns
    -------
    cka : ndarray of shape (n_layers, n_layers)
        Symmetric, values in [0, 1], 1 on the diagonal.  A layer that is
        constant across records has no defined CKA: its row and column are
        NaN and a ``RuntimeWarning`` names it.

    Notes
    -----
    With few records the (biased) estimator is pulled towards 1; use
    hundreds of records for a reading that means something.

    Examples
    --------
    >>> import numpy as np
    >>> H = np.random.default_rng(0).normal(size=(50, 3, 4))
    >>> bool(np.allclose(np.diag(linear_cka(H, n_layers=3)), 1))
    True
    """
    H = _layer_blocks(X_layers, n_layers, layer_spec, min_samples=2)
    centred = np.transpose(H - H.mean(axis=0, keepdims=True), (1, 0, 2))  # (L, n, dim)
    n_records, dim = centred.shape[1], centred.shape[2]
    cross, scale = (_cka_by_gram if n_records <= dim else _cka_by_features)(centred)
    # Relative test: centring a constant layer leaves rounding noise, not zeros,
    # and an absolute threshold would break the invariance to scaling.
    spread = np.linalg.norm(centred, axis=(1, 2))
    constant = spread <= 1e-10 * np.linalg.norm(H, axis=(0, 2))
    if constant.any():
        warnings.warn(
            f"Layers {np.flatnonzero(constant).tolist()} do not vary across records; their CKA "
            "is undefined and set to NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        cka = cross / np.outer(scale, scale)
    cka[constant, :] = np.nan
    cka[:, constant] = np.nan
    return np.clip((cka + cka.T) / 2, 0.0, 1.0)


# -- encoder-based analyses -----------------------------------------------------------
def _encoder_and_input(encoder, x, batch_size):
    """Resolve the encoder, validate ``x`` against its config, check ``batch_size``."""
    from ecgsoup.backbones.stmem import load_model

    encoder = load_model(encoder)
    cfg = encoder.config
    batch_size = _check_positive_int(batch_size, "batch_size")
    x = check_array(x, allow_nd=True, dtype=np.float32, input_name="x")
    if x.ndim == 2:
        if x.shape[1] != cfg.n_leads * cfg.n_samples:
            raise ValueError(
                f"x has {x.shape[1]} columns; a flat model-ready array needs "
                f"{cfg.n_leads} leads x {cfg.n_samples} samples = {cfg.n_leads * cfg.n_samples}. "
                "Pass (records, leads, time) windows of exactly the model's length instead."
            )
        x = x.reshape(x.shape[0], cfg.n_leads, cfg.n_samples)
    if x.ndim != 3:
        raise ValueError(f"x has {x.ndim} dimensions; expected (records, leads, time).")
    if x.shape[1] > cfg.n_leads:
        raise ValueError(
            f"x has {x.shape[1]} leads but the model has {cfg.n_leads} "
            f"({', '.join(cfg.lead_names)}); order the leads with ecgsoup.signal.lead_indices."
        )
    if x.shape[2] != cfg.n_samples:
        raise ValueError(
            f"x has {x.shape[2]} samples per lead; the model expects {cfg.n_samples} "
            f"({cfg.seconds:g} s at {cfg.sampling_rate:g} Hz). Resample with "
            "ecgsoup.signal.resample and cut windows of that length."
        )
    return encoder, x, batch_size


@contextmanager
def _inference(encoder):
    """Eval mode and no autograd, restoring the encoder's training flag afterwards."""
    import torch

    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        encoder.train(was_training)


def _batches(encoder, x: np.ndarray, batch_size: int):
    """Yield torch batches on the encoder's device and dtype (copies: inputs may be read-only)."""
    import torch

    param = next(encoder.parameters())
    for start in range(0, x.shape[0], batch_size):
        chunk = np.array(x[start : start + batch_size], dtype=np.float32, copy=True)
        yield torch.from_numpy(chunk).to(device=param.device, dtype=param.dtype)


def token_cosine_similarity(encoder, x, batch_size: int = 16) -> np.ndarray:
    """Token-wise cross-layer cosine similarity (the token variant of the pooled analysis).

    ``S[l, m]`` is the mean, over records and patch tokens ``t`` (SEP
    excluded), of ``cos(X^l_t, X^m_t)``: how much block outputs change each
    token, before pooling can average differences away.

    Parameters
    ----------
    encoder : STMEMEncoder, str or path
        The encoder, or anything :func:`ecgsoup.backbones.stmem.load_model` accepts.
    x : array-like of shape (n_records, n_leads, n_samples) or (n_records, n_leads * n_samples)
        Model-ready windows: model lead order, model length, z-scored per lead.
    batch_size : int, default=16
        Records per forward pass; memory is proportional to it.

    Returns
    -------
    similarity : ndarray of shape (depth + 1, depth + 1)
        Symmetric, 1 on the diagonal; layer 0 is the token embedding.

    Examples
    --------
    >>> from ecgsoup.backbones.stmem import random_model
    >>> x = np.random.default_rng(0).normal(size=(2, 12, 1000)).astype("float32")
    >>> token_cosine_similarity(random_model("ecgsoup-100hz-tiny"), x).shape
    (13, 13)
    """
    import torch

    encoder, x, batch_size = _encoder_and_input(encoder, x, batch_size)
    n_leads, n_patches = x.shape[1], encoder.config.n_patches
    total = torch.zeros(encoder.config.n_layers, encoder.config.n_layers, dtype=torch.float64)
    with _inference(encoder):
        for batch in _batches(encoder, x, batch_size):
            units = []
            for tokens in encoder.forward_layers(batch):
                framed = tokens.reshape(tokens.shape[0], n_leads, n_patches + 2, -1)
                patch = framed[:, :, 1:-1].reshape(-1, tokens.shape[-1]).float()
                units.append(torch.nn.functional.normalize(patch, dim=-1))
            stacked = torch.stack(units).flatten(1)  # (layers, tokens * dim)
            # sum over tokens of u_l . u_m = one matmul; batch totals add up in float64
            total += (stacked @ stacked.T).double().cpu()
    similarity = (total / (x.shape[0] * n_leads * n_patches)).numpy()
    return (similarity + similarity.T) / 2


class _RunningStats:
    """Mean and variance per (layer, head), merged batch by batch (Chan et al. 1979).

    Summing squares over millions of attention rows loses precision; merging
    per-batch means and squared deviations does not.
    """

    def __init__(self, n_layers: int, n_heads: int):
        self.count = np.zeros(n_layers)
        self.mean = np.zeros((n_layers, n_heads))
        self.m2 = np.zeros((n_layers, n_heads))

    def update(self, layer: int, values: np.ndarray) -> None:
        """Merge ``values`` of shape (heads, samples) into ``layer``'s statistics."""
        n_old, n_new = self.count[layer], values.shape[1]
        mean_new = values.mean(axis=1)
        m2_new = ((values - mean_new[:, None]) ** 2).sum(axis=1)
        total = n_old + n_new
        delta = mean_new - self.mean[layer]
        self.mean[layer] += delta * n_new / total
        self.m2[layer] += m2_new + delta**2 * n_old * n_new / total
        self.count[layer] = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation, (layers, heads)."""
        return np.sqrt(self.m2 / self.count[:, None])


def _attention_summary(attention, query_index, query_lead, n_leads: int, frame: int):
    """Per-query entropy and within-lead / cross-lead / SEP mass of one block's attention.

    ``attention`` is ``(B, heads, S, S)`` with the lead-major token layout
    (each lead: left SEP, patches, right SEP).  Returns four ``(heads, B * Q)``
    float64 arrays.
    """
    import torch

    rows = attention[:, :, query_index].double()  # (B, heads, Q, S)
    batch, heads, n_queries, _ = rows.shape
    entropy = torch.special.entr(rows).sum(dim=-1)  # entr(0) = 0, no log(0)
    per_lead = rows.reshape(batch, heads, n_queries, n_leads, frame)
    sep = per_lead[..., 0].sum(dim=-1) + per_lead[..., -1].sum(dim=-1)
    patch_mass = per_lead[..., 1:-1].sum(dim=-1)  # (B, heads, Q, leads)
    own = query_lead.view(1, 1, n_queries, 1).expand(batch, heads, n_queries, 1)
    within = patch_mass.gather(-1, own).squeeze(-1)
    cross = patch_mass.sum(dim=-1) - within
    return [
        value.permute(1, 0, 2).reshape(heads, -1).cpu().numpy()
        for value in (entropy, within, cross, sep)
    ]


def attention_entropy(encoder, x, batch_size: int = 16, *, queries: str = "patch") -> pd.DataFrame:
    """Attention entropy and where attention goes, per layer and head.

    For block ``l``, head ``k`` and query token ``i``,
    ``H = -sum_j A_ij log A_ij`` (nats), between 0 (all mass on one key) and
    ``log S`` (uniform over the ``S`` tokens).  The mass ``A_i.`` is split by
    key type using the lead-major token layout: patch tokens of the query's
    own lead (within-lead), patch tokens of other leads (cross-lead) and SEP
    tokens of any lead; the three sum to 1.

    Parameters
    ----------
    encoder : STMEMEncoder, str or path
        The encoder, or anything :func:`ecgsoup.backbones.stmem.load_model` accepts.
    x : array-like of shape (n_records, n_leads, n_samples) or (n_records, n_leads * n_samples)
        Model-ready windows: model lead order, model length, z-scored per lead.
    batch_size : int, default=16
        Records per forward pass; only one block's attention maps of one
        batch are held at a time.
    queries : {"patch", "all"}, default="patch"
        Which query tokens are averaged: patch tokens only (the ones pooled
        into ``h_l``) or every token including SEP.

    Returns
    -------
    summary : pandas.DataFrame
        One row per (layer, head), ``layer`` 1..depth and ``head`` 0..heads-1,
        with ``entropy_mean`` and ``entropy_std`` (population std over all
        record-query pairs), ``max_entropy`` (``log S``),
        ``entropy_normalised`` (mean / ``log S``), and the mean fractions
        ``within_lead_mass``, ``cross_lead_mass``, ``sep_mass``.
    """
    import torch

    if queries not in ("patch", "all"):
        raise ValueError(f"queries={queries!r}; expected 'patch' or 'all'.")
    encoder, x, batch_size = _encoder_and_input(encoder, x, batch_size)
    cfg = encoder.config
    n_leads, frame = x.shape[1], cfg.n_patches + 2
    n_tokens = n_leads * frame
    position = np.arange(n_tokens) % frame
    chosen = np.arange(n_tokens)
    if queries == "patch":
        chosen = chosen[(position > 0) & (position < frame - 1)]
    query_index = torch.from_numpy(chosen)
    query_lead = torch.from_numpy(chosen // frame)

    entropy = _RunningStats(cfg.depth, cfg.heads)
    masses = np.zeros((3, cfg.depth, cfg.heads))
    with _inference(encoder):
        device = next(encoder.parameters()).device
        query_index, query_lead = query_index.to(device), query_lead.to(device)
        for batch in _batches(encoder, x, batch_size):
            hidden = encoder.frame_tokens(encoder.patch_tokens(batch))
            for layer, block in enumerate(encoder.blocks):
                values = _attention_summary(
                    block.attention_weights(hidden), query_index, query_lead, n_leads, frame
                )
                entropy.update(layer, values[0])
                for k, mass in enumerate(values[1:]):
                    masses[k, layer] += mass.sum(axis=1)
                hidden = block(hidden)
    n_pairs = x.shape[0] * len(chosen)
    layers, heads = np.meshgrid(np.arange(1, cfg.depth + 1), np.arange(cfg.heads), indexing="ij")
    max_entropy = float(np.log(n_tokens))
    return pd.DataFrame(
        {
            "layer": layers.ravel(),
            "head": heads.ravel(),
            "entropy_mean": entropy.mean.ravel(),
            "entropy_std": entropy.std.ravel(),
            "max_entropy": max_entropy,
            "entropy_normalised": entropy.mean.ravel() / max_entropy,
            "within_lead_mass": (masses[0] / n_pairs).ravel(),
            "cross_lead_mass": (masses[1] / n_pairs).ravel(),
            "sep_mass": (masses[2] / n_pairs).ravel(),
        }
    )


# -- PMA gate -------------------------------------------------------------------------
def _gate_owner(estimator, X):
    """The object with ``gate_weights`` and the input it expects.

    A fitted PMA usually sits inside a ``Pipeline``: then the steps before it
    transform ``X`` first.
    """
    if hasattr(estimator, "gate_weights"):
        return estimator, X
    inner = getattr(estimator, "fusion_", None)
    if hasattr(inner, "gate_weights"):  # LayerwiseEmbedder(fusion=PMA(...))
        return inner, estimator.transform_layers(X)
    steps = getattr(estimator, "steps", None)
    if steps:
        for position, (_, step) in enumerate(steps):
            before = (lambda position=position: estimator[:position].transform(X)) if position else (lambda: X)
            if hasattr(step, "gate_weights"):
                return step, before()
            if hasattr(getattr(step, "fusion_", None), "gate_weights"):
                return step.fusion_, step.transform_layers(before())
    raise TypeError(
        f"{type(estimator).__name__} has no gate_weights method. Pass a fitted ecgsoup.pma.PMA "
        "or PMAClassifier, or a Pipeline that contains one."
    )


def gate_weight_distribution(pma_estimator, X_layers) -> pd.DataFrame:
    """Per-sample PMA gate weights summarised per fused layer.

    The gate of PMA gives every record its own softmax weights over
    the layers; this shows which layers it favours and how much that varies
    between records.  Call it once per dataset to compare datasets.

    Parameters
    ----------
    pma_estimator : fitted PMA, PMAClassifier or Pipeline
        Anything with a ``gate_weights(X)`` method returning ``(n, L)``
        weights, or a fitted ``Pipeline`` containing such a step (the steps
        before it transform ``X_layers`` first).
    X_layers : array-like of shape (n_records, n_features)
        Layer-wise embeddings of the records, as fed to ``pma_estimator``.

    Returns
    -------
    summary : pandas.DataFrame
        One row per fused layer (``layer`` 1..L: PMA mixes the block
        outputs, gate column ``j`` weighting layer ``j + 1``), with ``mean``,
        ``std`` (population), ``min``, ``q05``, ``q25``, ``median``, ``q75``, ``q95``, ``max`` of
        the weights over records, and ``argmax_fraction``, the share of
        records whose largest weight is on that layer.  ``attrs["n_records"]``
        holds the number of records.
    """
    check_is_fitted(pma_estimator)
    owner, X = _gate_owner(pma_estimator, X_layers)
    weights = np.asarray(owner.gate_weights(X), dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] == 0:
        raise ValueError(
            f"gate_weights returned shape {weights.shape}; expected (records, layers) "
            "for at least one record."
        )
    quantiles = np.quantile(weights, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    winners = np.bincount(weights.argmax(axis=1), minlength=weights.shape[1])
    summary = pd.DataFrame(
        {
            "layer": np.arange(1, weights.shape[1] + 1),
            "mean": weights.mean(axis=0),
            "std": weights.std(axis=0),
            "min": weights.min(axis=0),
            "q05": quantiles[0],
            "q25": quantiles[1],
            "median": quantiles[2],
            "q75": quantiles[3],
            "q95": quantiles[4],
            "max": weights.max(axis=0),
            "argmax_fraction": winners / weights.shape[0],
        }
    )
    summary.attrs["n_records"] = weights.shape[0]
    return summary


# -- plots ---------------------------------------------------------------------------
def _new_figure(width: float, height: float):
    """A pyplot-free Figure: no global state, works under any backend (Agg included)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _finish(fig, path):
    """Save ``fig`` when a path is given (format from the suffix, PNG by default)."""
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def _require_columns(df, columns, producer: str) -> pd.DataFrame:
    """``df`` itself, or an error naming the missing columns and where they come from."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected the DataFrame returned by {producer}, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"The DataFrame lacks columns {missing}; pass the output of {producer}."
        )
    if df.empty:
        raise ValueError(f"The DataFrame is empty; {producer} returns one row per layer.")
    return df


def plot_similarity_matrix(matrix, title: str = "Layer similarity", path=None, *, labels=None):
    """Heat map of a layer-by-layer matrix (cosine similarity, CKA).

    Parameters
    ----------
    matrix : array-like of shape (n_layers, n_layers) or DataFrame
        E.g. from :func:`layer_cosine_similarity`, :func:`token_cosine_similarity`
        or :func:`linear_cka`.  A DataFrame's index gives the labels.
    title : str, default="Layer similarity"
        Plot title, e.g. ``"Linear CKA"``.
    path : str or path-like, optional
        Where to save the figure (PNG unless the suffix says otherwise).
    labels : sequence, optional
        Tick labels; default the layer indices 0..n-1.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One heat map with a colour bar labelled ``title`` (values written in
        the cells up to 16 layers), coloured from ``min(0, matrix.min())`` to ``max(1, matrix.max())``.
    """
    if labels is None and isinstance(matrix, pd.DataFrame):
        labels = list(matrix.index)
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise ValueError(
            f"matrix has shape {values.shape}; expected a square layer-by-layer matrix."
        )
    n = values.shape[0]
    labels = [str(label) for label in (range(n) if labels is None else labels)]
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for a {n} x {n} matrix.")
    finite = values[np.isfinite(values)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(1.0, float(finite.max())) if finite.size else 1.0
    fig = _new_figure(1.0 + 0.45 * n, 0.5 + 0.42 * n)
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=low, vmax=high, cmap="viridis")
    # The colour bar names the quantity, like a y-axis would.
    fig.colorbar(image, ax=ax, shrink=0.85).set_label(title)
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if n <= 16:  # numbers stay legible up to about 16 cells a row
        for i in range(n):
            for j in range(n):
                if np.isfinite(values[i, j]):
                    shade = (values[i, j] - low) / (high - low)
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if shade > 0.6 else "white")
    return _finish(fig, path)


def plot_attention_entropy(df, path=None):
    """Attention entropy per layer (one line per head) and where attention goes.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`attention_entropy`.
    path : str or path-like, optional
        Where to save the figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: mean entropy per layer, a line per head, the head average in
        black and ``log S`` (uniform attention) dashed.  Right: within-lead,
        cross-lead and SEP attention mass per layer (mean over heads), stacked.
    """
    columns = ["layer", "head", "entropy_mean", "within_lead_mass", "cross_lead_mass", "sep_mass"]
    df = _require_columns(df, columns, "ecgsoup.analysis.attention_entropy")
    fig = _new_figure(11.0, 4.0)
    left, right = fig.subplots(1, 2)
    for head, rows in df.sort_values("layer").groupby("head"):
        left.plot(rows["layer"], rows["entropy_mean"], marker="o", markersize=3, lw=1,
                  alpha=0.7, label=f"head {head}")
    by_layer = df.groupby("layer").mean(numeric_only=True)
    left.plot(by_layer.index, by_layer["entropy_mean"], color="black", lw=2.5, label="mean")
    if "max_entropy" in df.columns:
        left.axhline(float(df["max_entropy"].iloc[0]), color="grey", ls="--", lw=1,
                     label="uniform (log S)")
    left.set_xlabel("layer")
    left.set_ylabel("attention entropy (nats)")
    left.set_title("Attention entropy per head")
    left.legend(fontsize=6, ncol=2)
    bottom = np.zeros(len(by_layer))
    for column, label in [("within_lead_mass", "within lead"), ("cross_lead_mass", "cross lead"),
                          ("sep_mass", "SEP tokens")]:
        right.bar(by_layer.index, by_layer[column], bottom=bottom, label=label)
        bottom += by_layer[column].to_numpy()
    right.set_xlabel("layer")
    right.set_ylabel("fraction of attention (mean over heads)")
    right.set_ylim(0, 1.05)
    right.set_title("Where attention goes")
    right.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for ax in (left, right):
        ax.set_xticks(by_layer.index)
    return _finish(fig, path)


def plot_gate_weights(df, path=None):
    """Distribution of PMA gate weights per layer, and how often each layer wins.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`gate_weight_distribution`.
    path : str or path-like, optional
        Where to save the figure.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Left: a box per layer (quartiles, median, whiskers at the 5th and
        95th percentiles, the mean as a dot) with the uniform weight ``1/L``
        dashed.  Right: share of records whose top weight is on each layer.
    """
    columns = ["layer", "mean", "q05", "q25", "median", "q75", "q95", "argmax_fraction"]
    df = _require_columns(df, columns, "ecgsoup.analysis.gate_weight_distribution")
    positions = np.arange(len(df))
    stats = [
        {"med": row.median, "q1": row.q25, "q3": row.q75, "whislo": row.q05, "whishi": row.q95,
         "mean": row.mean, "fliers": []}
        for row in df.itertuples()
    ]
    fig = _new_figure(10.0, 3.8)
    left, right = fig.subplots(1, 2)
    left.bxp(stats, positions=positions, showmeans=True, widths=0.6,
             meanprops={"marker": "o", "markerfacecolor": "black", "markeredgecolor": "black",
                        "markersize": 3})
    left.axhline(1.0 / len(df), color="grey", ls="--", lw=1, label="uniform 1/L")
    left.set_ylabel("gate weight")
    left.set_title("PMA gate weights per record (whiskers 5-95 %)")
    left.legend(fontsize=7)
    right.bar(positions, df["argmax_fraction"])
    right.set_ylabel("share of records")
    right.set_title("Layer with the largest weight")
    for ax in (left, right):
        ax.set_xticks(positions, [str(layer) for layer in df["layer"]])
        ax.set_xlabel("layer")
    return _finish(fig, path)
