"""Physical units and sampling rates the readers accept, shared by every reader of the package."""

from __future__ import annotations

__all__ = ["TO_MV", "FS_RANGE"]

#: Physical unit (lower-cased) -> factor to millivolts.  Anything else (e.g. the
#: "NU" of a plethysmogram) is not an ECG voltage and is left out of a record's signal.
TO_MV = {
    "nv": 1e-6, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
}  # fmt: skip

#: Sampling rates (Hz) an ECG can have; a rate outside comes from a header or file that lies.
FS_RANGE = (1.0, 100_000.0)
