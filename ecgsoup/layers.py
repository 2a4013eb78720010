"""The layer specification: what the columns of layer-wise embeddings are.

:class:`~ecgsoup.LayerwiseEmbedder` returns one row per record, the pooled
output of every chosen layer side by side::

    [ h_0 | h_1 | ... | h_L ]        block l is layers[l].width columns wide

and records, as ``layer_spec_``, a :class:`LayerSpec`: the layers' names,
widths and representation spaces ("streams"), the model's readout (what the
original model applies after pooling, e.g. ST-MEM's final LayerNorm) and the
model id (the sha256 of its weights).  The fusions (:class:`~ecgsoup.LayerSelector`,
:class:`~ecgsoup.PPA`, :class:`~ecgsoup.PMA`) read the columns through it.
No model constants travel in the rows.

Column names: ``layer03_dim0127`` (or ``stage5_dim0399`` for a CNN),
zero-padded so that string order equals numeric order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgsoup.backbones._base import LayerInfo, Readout

__all__ = ["LayerInfo", "LayerSpec", "Readout", "feature_names", "resolve_layers"]


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """Describes the columns of layer-wise embeddings.

    Parameters
    ----------
    model_id : str
        sha256 of the weights ("" for raw numbers of unknown origin).
    layers : tuple of LayerInfo
        The layers present, in column order.
    readout : Readout
        What the original model applies after pooling (identity or LayerNorm).
    model_name : str
        Human-readable name of the model, for messages.
    indices : tuple of int
        Index of each present layer in the model's own layer table.
    """

    model_id: str
    layers: tuple
    readout: Readout
    model_name: str = ""
    indices: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.indices:
            object.__setattr__(self, "indices", tuple(range(len(self.layers))))

    @classmethod
    def equal_blocks(cls, n_layers: int, dim: int) -> LayerSpec:
        """``n_layers`` blocks of ``dim`` columns of unknown origin, identity readout."""
        return cls("", tuple(LayerInfo(f"layer{i:02d}", dim) for i in range(n_layers)), Readout("identity"))

    @property
    def widths(self) -> tuple:
        return tuple(layer.width for layer in self.layers)

    @property
    def n_features(self) -> int:
        return int(sum(self.widths))

    @property
    def offsets(self) -> np.ndarray:
        """Start column of every layer, and the total width at the end."""
        return np.concatenate([[0], np.cumsum(self.widths)]).astype(int)

    @property
    def tag(self) -> str:
        """Short model tag used in messages: the first 8 hex digits of the model id."""
        return self.model_id[:8] if self.model_id else "unknown"

    def block(self, X: np.ndarray, position: int) -> np.ndarray:
        """Columns of the layer at ``position`` (a view)."""
        start, stop = self.offsets[position], self.offsets[position + 1]
        return X[:, start:stop]

    def stack(self, X: np.ndarray, positions) -> np.ndarray:
        """``(n, k, d)`` array of equal-width layers (a copy)."""
        return np.stack([self.block(X, p) for p in positions], axis=1)

    def feature_names(self, positions=None) -> np.ndarray:
        positions = range(len(self.layers)) if positions is None else positions
        return np.asarray(
            [f"{self.layers[p].name}_dim{d:04d}" for p in positions for d in range(self.layers[p].width)],
            dtype=object,
        )

    def select(self, positions) -> LayerSpec:
        """The specification of a subset of the layers (same model and readout)."""
        positions = list(positions)
        return LayerSpec(self.model_id, tuple(self.layers[p] for p in positions), self.readout,
                         self.model_name, tuple(self.indices[p] for p in positions))

    def same_model(self, other: LayerSpec) -> bool:
        return (self.model_id, self.layers, self.indices) == (other.model_id, other.layers, other.indices)

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id,
            "model_name": self.model_name,
            "layers": [[layer.name, layer.width, layer.stream] for layer in self.layers],
            "indices": list(self.indices),
            "readout": self.readout.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> LayerSpec:
        return cls(
            model_id=data["model_id"],
            layers=tuple(LayerInfo(str(n), int(w), str(s)) for n, w, s in data["layers"]),
            readout=Readout.from_dict(data["readout"]),
            model_name=data.get("model_name", ""),
            indices=tuple(data.get("indices", ())),
        )

    def __repr__(self) -> str:
        return (f"LayerSpec({self.model_name or 'model'} @{self.tag}, {len(self.layers)} layers "
                f"[{', '.join(layer.name for layer in self.layers[:3])}{', ...' if len(self.layers) > 3 else ''}], "
                f"{self.n_features} columns, readout={self.readout.kind})")


def feature_names(layers, dim: int) -> np.ndarray:
    """Column names for equal-width layer indices, e.g. ``layer03_dim0127``."""
    dims = [f"dim{d:04d}" for d in range(dim)]
    return np.asarray([f"layer{layer:02d}_{d}" for layer in layers for d in dims], dtype=object)


def resolve_layers(layers, n_layers: int, names=None) -> tuple[int, ...]:
    """Turn a layer choice into absolute indices, in the order given.

    ``layers`` may be an int (negative counts from the end), a layer name
    (``"stage5"``), a list of ints or names, a ``slice``, ``"all"`` (0..L),
    ``"blocks"`` (1..L), ``"last"`` (L) or ``"middle"`` (the middle block,
    L // 2 rounded up, i.e. 6 of 12).  ``names`` are the layers' names, when
    known.
    """
    last = n_layers - 1
    names = list(names) if names is not None else [f"layer{i:02d}" for i in range(n_layers)]
    named = {
        "all": tuple(range(n_layers)),
        "blocks": tuple(range(1, n_layers)) or (0,),
        "last": (last,),
        "middle": ((last + 1) // 2,),
    }
    if isinstance(layers, str):
        if layers in named:
            return named[layers]
        if layers in names:
            return (names.index(layers),)
        raise ValueError(
            f"layers={layers!r}; expected an int, a list of ints, a slice, a layer name "
            f"({', '.join(names[:3])}, ...) or one of {sorted(named)}."
        )
    if isinstance(layers, slice):
        chosen = tuple(range(n_layers)[layers])
    elif isinstance(layers, (int, np.integer)):
        chosen = (int(layers),)
    else:
        try:
            chosen = tuple(names.index(layer) if isinstance(layer, str) and layer in names else int(layer)
                           for layer in layers)
        except (TypeError, ValueError):
            raise ValueError(
                f"layers={layers!r} is not an int, a layer name, a sequence of them, a slice or a name."
            ) from None
    if not chosen:
        raise ValueError("layers selects no layer.")
    resolved = []
    for layer in chosen:
        if not -n_layers <= layer < n_layers:
            raise ValueError(
                f"Layer {layer} does not exist: the input has layers 0..{last} "
                f"({names[0]} .. {names[-1]})."
            )
        resolved.append(layer % n_layers)
    return tuple(resolved)
