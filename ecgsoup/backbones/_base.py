"""What every backbone family provides: its layers, input contract, card and readout.

A *backbone* is a frozen, pretrained ECG encoder whose every layer ecgsoup turns
into features.  Families differ in architecture, in what they call a layer, in
how they pool a layer into one vector per record, in the signal they expect and
in what they apply after pooling.  This module names those differences as data,
so that the embedder, the preprocessor and the fusions treat every family alike:

* :class:`LayerInfo` - one emitted layer: its name, width and representation
  space ("stream").  Layers of one stream may be averaged (PPA) or mixed (PMA).
* :class:`InputContract` - the signal the model was trained on: sampling rate,
  window, lead names (matched by name), layout, the named record-level recipe
  and the per-window normalisation.
* :class:`BackboneCard` - licence, source, citation and the notice shown once.
* :class:`Readout` - what the original model applies to a pooled vector
  (identity, or a LayerNorm whose parameters come from the weights).
* :class:`Backbone` - the ``torch.nn.Module`` base class of every family.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["LayerInfo", "InputContract", "BackboneCard", "Readout", "Backbone", "StagedCNN", "check_sizes", "empty_module"]


def check_sizes(config, limits: dict[str, int], max_entries: int = 64) -> None:
    """Refuse an architecture size that is not a positive whole number, or is beyond ``limits``.

    ``limits`` maps each size field (an int, or a tuple of ints such as a list
    of stage widths) to its largest accepted value: far beyond any published
    ECG encoder, but small enough that no config can ask for terabytes.  Runs
    before anything is built, so a config with ``width: null``, ``depth: 0``
    or ``width: 1000000`` fails with one line naming the field.
    """
    import numbers

    name = type(config).__name__
    for field_name, limit in limits.items():
        value = getattr(config, field_name)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (list, tuple)) and not 1 <= len(values) <= max_entries:
            raise ValueError(f"{name}: {field_name} has {len(values)} entries; it needs 1 to {max_entries}.")
        for item in values:
            if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < 1:
                raise ValueError(f"{name}: {field_name}={value!r} is not a positive whole number; give the "
                                 "model's size (e.g. the value of its published configuration).")  # fmt: skip
            if item > limit:
                raise ValueError(f"{name}: {field_name}={value!r} is larger than any ECG encoder (at most "
                                 f"{limit} is accepted); the config is wrong.")  # fmt: skip



@torch.no_grad()
def draw_parameter(name: str, tensor: torch.Tensor, generator: torch.Generator) -> None:
    """One parameter of a random model: normal weights with std ``1 / sqrt(fan_in)``, zero biases.

    A normalisation parameter (its name holds ``norm``) gets scale one and shift zero, so
    activations keep a unit scale through the stack.  Draws only from ``generator``.
    """
    if "norm" in name:
        tensor.fill_(1.0 if name.endswith("weight") else 0.0)
    elif name.endswith("bias"):
        tensor.zero_()
    else:
        noise = torch.empty(tensor.shape, dtype=torch.float32).normal_(generator=generator)
        tensor.copy_(noise / math.sqrt(tensor[0].numel()))


def empty_module(module_type, *args, **kwargs) -> nn.Module:
    """A module built without running its random initialisation (no global RNG use).

    It is made on the current default device, so that a model built under
    ``torch.device("meta")`` (to compare its shapes with a file) allocates nothing.
    """
    kwargs.setdefault("device", torch.get_default_device())
    return torch.nn.utils.skip_init(module_type, *args, **kwargs)


@dataclass(frozen=True)
class LayerInfo:
    """One emitted layer.

    Parameters
    ----------
    name : str
        Short name used in feature names, e.g. ``"layer07"``, ``"stage5"``.
    width : int
        Length of the pooled vector.
    stream : str
        Layers sharing a coordinate system (the residual stream of a
        transformer share one).  Only layers of one stream may be averaged.
    """

    name: str
    width: int
    stream: str = "residual"


WINDOW_NORMS = ("zscore_per_lead", "zscore_whole", "minmax_per_lead", "minmax_whole", "none")


@dataclass(frozen=True)
class InputContract:
    """The signal a backbone expects; everything a preprocessor needs, no architecture.

    Parameters
    ----------
    sampling_rate : float
        Hz of the model's input.
    window : int
        Samples per lead in one model window, at ``sampling_rate``.
    lead_names : tuple of str
        The model's lead order; input leads are matched to it by name.
    layout : {"leads", "concatenated"}
        ``"leads"``: the network sees ``(batch, leads, time)``.
        ``"concatenated"``: it sees one lead-major vector ``(batch, leads * time)``.
    recipe : str
        Name and version of the record-level steps (filters, resampling,
        record-wide scaling) that :class:`ecgsoup.ECGPreprocessor` applies.
    window_norm : str
        Per-window scaling applied by the embedder: one of
        ``"zscore_per_lead"``, ``"zscore_whole"``, ``"minmax_per_lead"``,
        ``"minmax_whole"`` or ``"none"``.
    stride : int or None
        Default step between windows for longer records (None: half a window).
    units : {"mV", "uV"}
        Amplitude unit of the training data; :class:`ecgsoup.ECGPreprocessor`
        converts its input (in mV, as ``ecgsoup.io`` reads records) to it.
    bandpass : (float, float) or None
        Band-pass applied by the ``"resample"`` recipe, if any.
    window_transform : str or None
        ``"module:attr"`` of a function applied to each batch of windows
        after ``window_norm`` (``(B, C, T)`` float32 numpy in, numpy out), for
        recipes whose last steps act on the window (e.g. HuBERT-ECG decimates
        the flattened 12-lead vector).  The module receives its output.
    """

    sampling_rate: float
    window: int
    lead_names: tuple[str, ...]
    layout: Literal["leads", "concatenated"] = "leads"
    recipe: str = "resample@1"
    window_norm: str = "zscore_per_lead"
    stride: int | None = None
    units: str = "mV"
    bandpass: tuple[float, float] | None = None
    window_transform: str | None = None

    def __post_init__(self):
        import math
        import numbers

        # Bounded before anything is resampled or allocated for it: a config's window of 10**11
        # samples would otherwise become a 10**11-sample record.
        rate = self.sampling_rate
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not (math.isfinite(rate) and 1 <= rate <= 100_000):
            raise ValueError(f"InputContract: sampling_rate={rate!r} is not a plausible ECG rate (1 to 100000 "
                             "Hz).")  # fmt: skip
        check_sizes(self, {"window": 2**20})
        if self.stride is not None:
            check_sizes(self, {"stride": 2**20})
        if isinstance(self.lead_names, str) or not 1 <= len(self.lead_names) <= 64:
            raise ValueError(f"InputContract: lead_names={self.lead_names!r} must list 1 to 64 lead names.")
        object.__setattr__(self, "lead_names", tuple(self.lead_names))
        if self.bandpass is not None:
            object.__setattr__(self, "bandpass", tuple(float(b) for b in self.bandpass))
        if self.layout not in ("leads", "concatenated"):
            raise ValueError(f"layout={self.layout!r}; expected 'leads' or 'concatenated'.")
        from ecgsoup.signal import UNIT_TO_MV

        if self.units not in UNIT_TO_MV:
            raise ValueError(f"units={self.units!r}; expected one of {sorted(UNIT_TO_MV)}.")
        if self.window_norm not in WINDOW_NORMS:
            raise ValueError(f"window_norm={self.window_norm!r}; expected one of {WINDOW_NORMS}.")
        if self.window < 1 or self.sampling_rate <= 0:
            raise ValueError("An input contract needs a positive window and sampling rate.")

    @property
    def n_leads(self) -> int:
        return len(self.lead_names)

    @property
    def seconds(self) -> float:
        return self.window / self.sampling_rate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputContract:
        return cls(**data)

    def describe(self) -> str:
        """One line for messages: rate, window, leads and recipe."""
        return (
            f"{self.n_leads} leads ({', '.join(self.lead_names)}) at {self.sampling_rate:g} Hz, "
            f"{self.window} samples ({self.seconds:g} s) per window, recipe {self.recipe}, "
            f"window normalisation {self.window_norm}"
            + (f", then {self.window_transform.rsplit(':', 1)[-1]}" if self.window_transform else "")
        )


@dataclass(frozen=True)
class BackboneCard:
    """Who made the weights, under which licence, and how to cite them.

    ``license`` is an SPDX identifier, or ``"unstated"``.  ``notice`` is the
    sentence shown once per weights file (see :class:`LicenceNotice`).
    """

    name: str
    family: str
    license: str
    source: str = ""
    citation: str = ""
    download: str = ""
    notice: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BackboneCard:
        return cls(**data)


@dataclass(frozen=True, eq=False)
class Readout:
    """What the original model applies to a pooled vector before its head.

    ``kind="identity"``: nothing (post-LN transformers, CNNs).
    ``kind="layernorm"``: a LayerNorm over the last axis with ``weight``,
    ``bias`` and ``eps`` taken from the weights (ST-MEM's final norm).
    Works on numpy arrays of shape ``(n, d)`` and ``(n, k, d)``.
    """

    kind: Literal["identity", "layernorm"] = "identity"
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    eps: float = 1e-5

    def __post_init__(self):
        if self.kind not in ("identity", "layernorm"):
            raise ValueError(f"Readout kind={self.kind!r}; expected 'identity' or 'layernorm'.")

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        if self.kind == "identity":
            return Z
        mean = Z.mean(axis=-1, keepdims=True)
        var = Z.var(axis=-1, keepdims=True)
        out = (Z - mean) / np.sqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight + self.bias
        return out.astype(Z.dtype, copy=False)

    def torch(self, Z: torch.Tensor) -> torch.Tensor:
        """The same readout on a tensor (used inside PMA's network)."""
        if self.kind == "identity":
            return Z
        weight = None if self.weight is None else torch.as_tensor(self.weight, dtype=Z.dtype, device=Z.device)
        bias = None if self.bias is None else torch.as_tensor(self.bias, dtype=Z.dtype, device=Z.device)
        return torch.nn.functional.layer_norm(Z, (Z.shape[-1],), weight, bias, self.eps)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Readout) or (self.kind, self.eps) != (other.kind, other.eps):
            return False
        same = lambda a, b: (a is None and b is None) or (  # noqa: E731
            a is not None and b is not None and np.array_equal(a, b)
        )
        return same(self.weight, other.weight) and same(self.bias, other.bias)

    __hash__ = None

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "eps": self.eps,
            "weight": None if self.weight is None else np.asarray(self.weight).tolist(),
            "bias": None if self.bias is None else np.asarray(self.bias).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Readout:
        arr = lambda v: None if v is None else np.asarray(v, dtype=np.float32)  # noqa: E731
        return cls(kind=data["kind"], weight=arr(data.get("weight")), bias=arr(data.get("bias")),
                   eps=float(data.get("eps", 1e-5)))


class Backbone(nn.Module):
    """Base class of every family's encoder module.

    A family subclasses it and implements :meth:`forward_layers` and
    :meth:`pool` (and :attr:`layers`, :meth:`readout` when the defaults do not
    apply).  The loader sets ``card``, ``contract`` and ``metadata`` (with the
    weights' ``sha256``) on the instance.

    Input to :meth:`forward_layers` and :meth:`pooled_layers` is always
    ``(batch, leads, time)`` in the contract's lead order, after the
    contract's window normalisation; a family with a concatenated layout
    flattens it itself.
    """

    family: str = ""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.card: BackboneCard | None = None
        self.contract: InputContract | None = None
        self.metadata: dict = {}

    # -- what a family implements -------------------------------------------------
    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        """The emitted layers, in order (index 0: the pre-block representation)."""
        raise NotImplementedError

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's hidden map, as computed, from one forward pass."""
        raise NotImplementedError

    def pool(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """One layer's hidden map pooled as the original model does: ``(B, width)``."""
        raise NotImplementedError

    def readout(self) -> Readout:
        """What the original model applies after pooling (identity by default)."""
        return Readout("identity")

    # -- shared -------------------------------------------------------------------
    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer pooled, concatenated: ``(B, sum of widths)``.

        The default pools each layer from :meth:`forward_layers`; families
        override it to pool each layer as soon as it is computed.
        """
        return torch.cat([self.pool(h, i) for i, h in enumerate(self.forward_layers(x))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled_layers(x)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(layer.width for layer in self.layers)


def config_to_dict(config) -> dict:
    """A family config dataclass as JSON-ready data."""
    return dataclasses.asdict(config)


@dataclass(frozen=True)
class FamilyEntry:
    """A family's registry entry: data only, with lazy ``"module:attr"`` strings.

    Parameters
    ----------
    family : str
        Family name used in ``"<family>:<path>"`` and in model names.
    module : str
        ``"module:attr"`` of the :class:`Backbone` subclass.
    config : str
        ``"module:attr"`` of the family's config dataclass.
    convert : str
        ``"module:attr"`` of ``convert(path, **options) -> Converted``.
    sizes : dict
        Size name -> config keyword arguments (for ``random:`` and conformance tests).
    contracts : dict
        Contract name -> :class:`InputContract`.
    default_contract : str
        Name of the contract used unless the user chooses another.
    card : BackboneCard
        Licence, source, citation, download page and notice.
    layer_meaning : str
        One paragraph: what each layer is and how it is pooled.
    tiny : dict
        Config keyword arguments of a tiny geometry, for tests.
    """

    family: str
    module: str
    config: str
    convert: str
    sizes: dict
    contracts: dict
    default_contract: str
    card: BackboneCard
    layer_meaning: str = ""
    tiny: dict = field(default_factory=dict)
    weights: tuple = ()  # ((registered name suffix, size, file name, download url), ...)
    recipes: dict = field(default_factory=dict)  # recipe name -> "module:attr" record-level function


@dataclass
class Converted:
    """What a family converter returns: weights in ecgsoup names, the geometry, and notes."""

    state_dict: dict
    config: object
    notes: list = field(default_factory=list)
    contract: InputContract | None = None  # when the file itself settles the contract


class StagedCNN(Backbone):
    """A 1-D CNN whose layers are its stem's output and each stage's output, each averaged over time.

    Subclasses define ``_stem(x)`` and ``stages`` (an iterable of modules); the
    last stage averaged over time is the model's embedding (readout: identity).
    """

    def forward_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's and every stage's output, each ``(B, width, time)``."""
        hidden = self._stem(x)
        outputs = [hidden]
        for stage in self.stages:
            hidden = stage(hidden)
            outputs.append(hidden)
        return outputs

    def pool(self, hidden: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """Global average over time: ``(B, width, time) -> (B, width)``."""
        return hidden.mean(-1)

    def pooled_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Every layer pooled as soon as it is computed, concatenated: ``(B, sum of widths)``."""
        hidden = self._stem(x)
        pooled = [hidden.mean(-1)]
        for stage in self.stages:
            hidden = stage(hidden)
            pooled.append(hidden.mean(-1))
        return torch.cat(pooled, dim=1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The original model's embedding: the last stage averaged over time, ``(B, last width)``."""
        hidden = self._stem(x)
        for stage in self.stages:
            hidden = stage(hidden)
        return hidden.mean(-1)
