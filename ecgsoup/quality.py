"""Signals that are not ECGs: an all-zero record, a flat (lead-off) lead, a clipped recording.

Such a record embeds without an error, and its embedding is as plausible as any
other, so :func:`signal_quality` notes it instead: ``ecgsoup embed`` stores
the note per record (``quality`` in the store, ``attrs["quality_notes"]`` of
:func:`ecgsoup.store.open_store`) and lists it in its summary, and
``--skip-poor-signals`` fails such records instead of embedding them.

The thresholds are set so that none of the real records of the project's test
data (LUDB, PTB-XL, the PhysioNet Challenge samples, MIT-BIH, PTB) is noted,
except leads that are truly flat in their files.
"""

from __future__ import annotations

import numpy as np

__all__ = ["signal_quality", "FLAT_MV", "CLIP_RUNS"]

#: A lead whose peak-to-peak amplitude is below this (in mV) is flat: an electrode is off or
#: the channel was never recorded.  A real lead spans at least the QRS, some 0.1 mV or more.
FLAT_MV = 0.01
#: A lead is clipped when its maximum (or minimum) value is held for 10 ms or more in at least
#: this many separate stretches: a saturated amplifier cuts every beat's peak at one value,
#: while a real peak holds its extreme for a sample or two, and a flat start or end of a
#: record is one stretch.
CLIP_RUNS = 3


def signal_quality(signal, fs, lead_names) -> str:
    """A note on a record that does not look like an ECG, or ``""`` when it does.

    Parameters
    ----------
    signal : ndarray of shape (n_samples, n_leads)
        Time-major, in mV.
    fs : float
        Sampling rate in Hz.
    lead_names : sequence of str

    Returns
    -------
    note : str
        E.g. ``"all-zero signal"``, ``"flat lead(s) V2, V4 (electrode off?)"``,
        ``"clipped lead(s) II (values held at the rail)"``; several joined by ``"; "``.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        return ""
    finite = np.isfinite(x)
    if not finite.any() or not np.any(x[finite]):
        return "all-zero signal" if finite.all() else ""
    notes = []
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(x, axis=0) - np.nanmin(x, axis=0)
    flat = [str(name) for name, s in zip(lead_names, spread) if np.isfinite(s) and s < FLAT_MV]
    if len(flat) == x.shape[1]:
        return f"flat signal (every lead spans less than {FLAT_MV:g} mV: electrodes off, or a wrong gain or unit)"
    if flat:
        notes.append(f"flat lead(s) {', '.join(flat)} (electrode off?)")
    hold = max(2, int(round(0.010 * float(fs))))
    clipped = [str(name) for j, name in enumerate(lead_names)
               if spread[j] >= FLAT_MV and _held_at_rail(x[:, j], hold) >= CLIP_RUNS]  # fmt: skip
    if clipped:
        notes.append(f"clipped lead(s) {', '.join(clipped)} (values held at the rail)")
    return "; ".join(notes)


def _held_at_rail(values: np.ndarray, hold: int) -> int:
    """How many separate stretches of ``hold`` or more samples sit at the maximum, or at the minimum."""
    best = 0
    for rail in (np.nanmax(values), np.nanmin(values)):
        at = np.concatenate([[False], values == rail, [False]])
        edges = np.flatnonzero(np.diff(at.astype(np.int8)))
        lengths = edges[1::2] - edges[::2]
        best = max(best, int((lengths >= hold).sum()))
    return best
