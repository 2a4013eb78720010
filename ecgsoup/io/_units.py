"""Physical units and sampling rates the readers accept, shared by every reader of the package."""

from __future__ import annotations

from ecgsoup.signal import VOLTAGE_UNITS

__all__ = ["TO_MV", "FS_RANGE"]

#: Physical unit (lower-cased) -> factor to millivolts: the package's one voltage table.
TO_MV = VOLTAGE_UNITS

#: Sampling rates (Hz) an ECG can have; a rate outside comes from a header or file that lies.
FS_RANGE = (1.0, 100_000.0)
