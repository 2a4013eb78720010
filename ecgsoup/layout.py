"""The column layout of layer-wise embeddings, shared by the embedder and fusion.

``LayerwiseEmbedder`` returns a 2-D array, one row per record::

    [ h_0 | h_1 | ... | h_L | gamma | beta ]      each block has `dim` columns

``h_l`` is the pooled output of layer ``l`` (layer 0 = token embedding).  The
two trailing blocks, present when the embedder runs with ``include_norm=True``
(its default), carry the backbone's final LayerNorm weight and bias, the same
in every row.  They let ``LayerSelector``, ``PPA`` and ``PMA`` apply the
*pretrained* final norm (``z = LN_enc(...)``) without being wired to the model, and
they survive everything a plain array survives: CV slicing, caching, pickling,
pandas output, files written by ``ecgsoup embed``.

Column names make the layout readable: ``layer03_dim0127``,
``norm_weight_dim0127``, ``norm_bias_dim0127``; zero-padded so that string
order equals numeric order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LAYER_NORM_EPS",
    "Layout",
    "feature_names",
    "infer_layout",
    "split_layers",
    "layer_norm",
    "resolve_layers",
]

# Both named configurations (spec 2.2) use eps=1e-5 in the final LayerNorm.
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class Layout:
    """How many layer blocks, how wide, and whether the norm blocks follow."""

    n_layers: int
    dim: int
    has_norm: bool

    @property
    def n_features(self) -> int:
        return (self.n_layers + 2 * self.has_norm) * self.dim


def feature_names(layers, dim: int, include_norm: bool) -> np.ndarray:
    """Column names for the given layer indices, e.g. ``layer03_dim0127``."""
    dims = [f"dim{d:04d}" for d in range(dim)]
    names = [f"layer{layer:02d}_{d}" for layer in layers for d in dims]
    if include_norm:
        names += [f"norm_weight_{d}" for d in dims] + [f"norm_bias_{d}" for d in dims]
    return np.asarray(names, dtype=object)


def infer_layout(n_features: int, n_layers: int, has_norm: bool) -> Layout:
    """Block width implied by ``n_features``; a clear error when it does not divide."""
    blocks = n_layers + 2 * has_norm
    if n_layers < 1 or n_features % blocks:
        norm = " + 2 norm blocks" if has_norm else ""
        raise ValueError(
            f"X has {n_features} columns, which is not {n_layers} layer blocks{norm} of "
            "equal width. Feed the output of LayerwiseEmbedder (layers='all'), and set "
            "n_layers to the number of layers it emits (13 for a 12-block ST-MEM); "
            "use norm=None if the embedder ran with include_norm=False."
        )
    return Layout(n_layers=n_layers, dim=n_features // blocks, has_norm=has_norm)


def split_layers(X: np.ndarray, layout: Layout):
    """Split rows into ``(n, n_layers, dim)`` and the norm weight and bias.

    Returns ``(H, weight, bias)``; ``weight`` and ``bias`` are ``None`` when
    the layout carries no norm.  They are read from the first row (every row
    holds the same values).
    """
    n, dim, n_layers = X.shape[0], layout.dim, layout.n_layers
    H = X[:, : n_layers * dim].reshape(n, n_layers, dim)
    if not layout.has_norm:
        return H, None, None
    start = n_layers * dim
    weight = X[0, start : start + dim]
    bias = X[0, start + dim : start + 2 * dim]
    return H, weight, bias


def layer_norm(H: np.ndarray, weight=None, bias=None, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    """LayerNorm over the last axis (population variance, as torch does)."""
    mean = H.mean(axis=-1, keepdims=True)
    var = H.var(axis=-1, keepdims=True)
    out = (H - mean) / np.sqrt(var + eps)
    if weight is not None:
        out = out * weight + bias
    return out.astype(H.dtype, copy=False)


def resolve_layers(layers, n_layers: int) -> tuple[int, ...]:
    """Turn a layer choice into sorted-as-given absolute indices.

    ``layers`` may be an int (negative counts from the end), a list/tuple of
    ints, a ``slice``, ``"all"`` (0..L), ``"blocks"`` (1..L), ``"last"`` (L)
    or ``"middle"`` (the middle block, L // 2 rounded up, i.e. 6 of 12).
    """
    last = n_layers - 1
    if isinstance(layers, str):
        named = {
            "all": tuple(range(n_layers)),
            "blocks": tuple(range(1, n_layers)) or (0,),
            "last": (last,),
            "middle": ((last + 1) // 2,),
        }
        if layers not in named:
            raise ValueError(
                f"layers={layers!r}; expected an int, a list of ints, a slice, or one of "
                f"{sorted(named)}."
            )
        return named[layers]
    if isinstance(layers, slice):
        chosen = tuple(range(n_layers)[layers])
    elif isinstance(layers, (int, np.integer)):
        chosen = (int(layers),)
    else:
        try:
            chosen = tuple(int(layer) for layer in layers)
        except TypeError:
            raise ValueError(f"layers={layers!r} is not an int, a sequence of ints, a slice or a name.") from None
    if not chosen:
        raise ValueError("layers selects no layer.")
    resolved = []
    for layer in chosen:
        if not -n_layers <= layer < n_layers:
            raise ValueError(
                f"Layer {layer} does not exist: the input has layers 0..{last} "
                f"(0 = token embedding, 1..{last} = transformer blocks)."
            )
        resolved.append(layer % n_layers)
    return tuple(resolved)
