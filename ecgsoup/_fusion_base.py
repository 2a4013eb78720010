"""What the fusions (LayerSelector, PPA, PMA) share: reading the columns through a layer specification.

Every fusion takes a ``layer_spec`` (or ``n_layers`` equal raw blocks), checks
that the input matches it, and names its output columns the same way; the
functions here are that common part, used by :mod:`ecgsoup.fusion` and
:mod:`ecgsoup.pma`.
"""

from __future__ import annotations

import numpy as np

from ecgsoup._sklearn_compat import HasMethods
from ecgsoup.layers import LayerSpec

__all__ = ["SPEC_CONSTRAINT", "check_column_tags", "fusion_names", "same_stream", "spec_for"]


def spec_for(estimator, X) -> LayerSpec:
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
    check_column_tags(estimator, spec)
    return spec


def check_column_tags(estimator, spec: LayerSpec) -> None:
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


def same_stream(estimator, spec: LayerSpec, positions) -> None:
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


def fusion_names(prefix: str, dim: int) -> np.ndarray:
    """Output column names of a fusion: ``<prefix>_dim0000`` ... ``<prefix>_dim<dim-1>``."""
    return np.asarray([f"{prefix}_dim{d:04d}" for d in range(dim)], dtype=object)


#: Parameter constraint of ``layer_spec``: a LayerSpec (anything that selects and names layers) or None.
SPEC_CONSTRAINT = [HasMethods(["feature_names", "select"]), None]
