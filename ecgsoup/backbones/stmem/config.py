"""Encoder configurations: architecture plus the preprocessing contract.

A weight file is only meaningful together with the signal it was trained on
(sampling rate, crop length, lead order, units, normalisation).  ``EncoderConfig``
keeps both in one frozen record, so that whatever loads the weights also knows
how the input must look.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ecgsoup.leads import ECGSOUP_LEAD_ORDER, STANDARD_LEAD_ORDER

__all__ = ["EncoderConfig", "get_config", "list_configs", "SIZES"]

# width, heads, MLP hidden size; depth is 12 for every ST-MEM size, as in the ST-MEM release.
SIZES = {
    "tiny": dict(width=192, heads=3, mlp_dim=768),
    "small": dict(width=384, heads=6, mlp_dim=1536),
    "base": dict(width=768, heads=12, mlp_dim=3072),
}


# Largest accepted sizes: far beyond the base model (width 768, depth 12, window 2250), and
# small enough that no config asks for more memory than a weights file could fill.
_LIMITS = dict(n_samples=2**17, patch_size=2**14, width=2**14, depth=256, heads=256, mlp_dim=2**16, dim_head=2**12)


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to build an ST-MEM encoder and feed it correctly.

    Parameters
    ----------
    name : str
        Human-readable name, e.g. ``"ecgsoup-100hz-tiny"``.
    sampling_rate : float
        Sampling rate in Hz that the model expects.
    n_samples : int
        Samples per lead in one model window.
    patch_size : int
        Samples per patch; ``n_samples`` must be a multiple of it.
    lead_names : tuple of str
        Lead order of the lead embeddings (index k is lead embedding k).
    width, depth, heads, mlp_dim : int
        Transformer width, number of blocks, attention heads, MLP hidden size.
    dim_head : int, default=64
        Size of one attention head (ST-MEM uses 64 for every size).
    qkv_bias : bool, default=True
        Whether the fused query/key/value projection has a bias.
    norm_eps : float, default=1e-5
        Epsilon of every LayerNorm in the encoder.
    units : str, default="mV"
        Physical unit the model was trained on.
    normalisation : str, default="zscore"
        ``"zscore"``: each window is standardised per lead over time (eps 1e-8).
    bandpass : tuple of float or None, default=None
        Band-pass (low, high) in Hz applied before normalisation, or None.
    extra : dict, default={}
        Free-form notes saved with the configuration (for example where a
        converted checkpoint came from).  The model never reads them, and
        they take no part in comparing two configurations.
    """

    name: str
    sampling_rate: float
    n_samples: int
    patch_size: int
    lead_names: tuple[str, ...]
    width: int
    depth: int
    heads: int
    mlp_dim: int
    dim_head: int = 64
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    units: str = "mV"
    normalisation: str = "zscore"
    bandpass: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        import math

        from ecgsoup.backbones._base import check_sizes

        check_sizes(self, _LIMITS)
        rate = self.sampling_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (1 <= rate <= 100_000 and math.isfinite(rate)):
            raise ValueError(f"EncoderConfig: sampling_rate={rate!r} is not a plausible ECG rate (1 to 100000 "
                             "Hz).")  # fmt: skip
        if self.n_samples % self.patch_size:
            raise ValueError(
                f"n_samples={self.n_samples} is not a multiple of "
                f"patch_size={self.patch_size}."
            )
        if self.normalisation not in ("zscore", "none"):
            raise ValueError(
                f"normalisation={self.normalisation!r}; expected 'zscore' or 'none'."
            )
        # JSON gives lists; keep the record hashable and comparable.
        object.__setattr__(self, "lead_names", tuple(self.lead_names))
        if self.bandpass is not None:
            object.__setattr__(self, "bandpass", tuple(self.bandpass))

    @property
    def n_leads(self) -> int:
        return len(self.lead_names)

    @property
    def n_patches(self) -> int:
        return self.n_samples // self.patch_size

    @property
    def n_layers(self) -> int:
        """Number of emitted layers: the embedding (layer 0) plus ``depth`` blocks."""
        return self.depth + 1

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sampling_rate

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown encoder config keys: {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> EncoderConfig:
        return dataclasses.replace(self, **changes)


# The two input settings ecgsoup supports: ECG-Soup's own (100 Hz, 10 s, patch 0.5 s)
# and the original ST-MEM release (250 Hz, 9 s, patch 0.3 s, 0.67-40 Hz band-pass).
_FAMILIES = {
    "ecgsoup-100hz": dict(
        sampling_rate=100.0,
        n_samples=1000,
        patch_size=50,
        lead_names=ECGSOUP_LEAD_ORDER,
        bandpass=None,
    ),
    "st-mem-250hz": dict(
        sampling_rate=250.0,
        n_samples=2250,
        patch_size=75,
        lead_names=STANDARD_LEAD_ORDER,
        bandpass=(0.67, 40.0),
    ),
}


def list_configs() -> list[str]:
    """Names accepted by :func:`get_config`, e.g. ``"ecgsoup-100hz-tiny"``."""
    return [f"{family}-{size}" for family in _FAMILIES for size in SIZES]


def get_config(name: str, size: str | None = None) -> EncoderConfig:
    """Return a named architecture.

    Parameters
    ----------
    name : str
        ``"ecgsoup-100hz"`` or ``"st-mem-250hz"``, optionally with the size
        appended (``"ecgsoup-100hz-tiny"``).
    size : {"tiny", "small", "base"}, default=None
        Model size when ``name`` carries none; ``None`` means ``"base"``.
    """
    family, _, suffix = name.rpartition("-")
    if suffix in SIZES and family in _FAMILIES:
        if size is not None and size != suffix:
            raise ValueError(f"Config {name!r} already names size {suffix!r}.")
        size = suffix
    else:
        family = name
    if family not in _FAMILIES:
        raise ValueError(
            f"Unknown model configuration {name!r}. Known: {', '.join(list_configs())}."
        )
    size = size or "base"
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}; expected one of {sorted(SIZES)}.")
    return EncoderConfig(
        name=f"{family}-{size}", depth=12, **SIZES[size], **_FAMILIES[family]
    )
