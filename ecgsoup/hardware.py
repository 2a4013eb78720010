"""What the processor can do that changes which settings are fast.

bfloat16 is fast on a CPU only when the CPU has bf16 instructions (x86: AVX-512 BF16 or
AMX; Arm: the BF16 extension).  Elsewhere torch emulates it in software, and bf16 runs
many times slower than float32.
"""

from __future__ import annotations

import functools
import platform
import warnings
from pathlib import Path

__all__ = ["BF16_FLAGS", "SlowPrecisionWarning", "check_device", "cpu_has_bf16", "resolve_precision", "warn_if_bf16_emulated"]

# /proc/cpuinfo flags that mean native bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


class SlowPrecisionWarning(UserWarning):
    """bfloat16 asked for on a CPU that has to emulate it (slower than float32)."""


def _cpuinfo_flags(text: str) -> set[str] | None:
    """The CPU feature flags in a /proc/cpuinfo text (x86 ``flags``, Arm ``Features``)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


@functools.cache
def cpu_has_bf16() -> bool | None:
    """Whether this CPU computes bfloat16 natively: True, False, or None when it cannot tell.

    Reads the feature flags of ``/proc/cpuinfo`` (Linux); on other systems, or
    when the file has no flags line, the answer is None.
    """
    if platform.system() != "Linux":
        return None
    try:
        flags = _cpuinfo_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None
    return None if flags is None else bool(flags & BF16_FLAGS)


def warn_if_bf16_emulated(precision: str, device: str, what: str) -> None:
    """Warn once per call site when bfloat16 is asked for on a CPU without bf16 instructions."""
    if precision != "bfloat16" or not str(device).startswith("cpu") or cpu_has_bf16() is not False:
        return
    warnings.warn(
        f"{what}: precision='bfloat16' on a CPU without bf16 instructions (no AVX-512 BF16, AMX "
        "or Arm BF16): torch emulates it, which is many times slower than float32 here; use "
        "precision='float32'.",
        SlowPrecisionWarning,
        stacklevel=3,
    )


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` made concrete: ``"bfloat16"`` where the device computes it natively, else ``"float32"``.

    A CUDA device counts when torch says it supports bf16; a CPU when its
    feature flags name bf16 instructions (unknown counts as no).  Other values
    pass through unchanged.
    """
    if precision != "auto":
        return precision
    device = str(device)
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if device.startswith("cpu"):
        return "bfloat16" if cpu_has_bf16() else "float32"
    return "float32"


def check_device(device):
    """The ``torch.device`` for ``device`` ("cpu", "cuda", "cuda:N", "mps"), or a ValueError saying why not.

    Refuses names torch does not know, CUDA without a usable GPU, a CUDA index
    beyond the devices present, and MPS where Apple's Metal backend is absent.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device name ('cpu', 'cuda', 'cuda:1', 'mps')."
        ) from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available (this torch build: {torch.__version__}, "
            "no usable GPU). Use device='cpu', or install a CUDA build of torch on a GPU machine."
        )
    count = torch.cuda.device_count() if parsed.type == "cuda" else 0
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= count:
        raise ValueError(f"device={device!r} but only {count} CUDA device(s) exist.")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device={device!r} but MPS is not available on this machine. Use device='cpu'."
        )
    return parsed
