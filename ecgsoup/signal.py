"""Array-level signal operations shared by preprocessing, pretraining and the CLI.

Every function here works on **time-major** arrays ``(..., time, leads)`` (the
layout of ``wfdb.rdsamp`` and of the shared data) unless it says otherwise,
and never modifies its input.  :class:`ecgsoup.preprocessing.ECGPreprocessor`
is the sklearn face of the same steps.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgsoup.leads import canonical_lead_name

__all__ = ["lead_indices", "derive_limb_leads", "DERIVED_LEADS", "resample", "bandpass", "zscore", "check_finite", "window_starts", "UNIT_TO_MV", "VOLTAGE_UNITS", "as_time_major", "flat_layout"]

ZSCORE_EPS = 1e-8  # ECG-Soup's z-score: (x - mean) / (std + 1e-8), std with ddof 0
#: Most values (samples x leads) one record may hold, read or resampled: 2**28 values are 2 GiB
#: as float64, e.g. 12 leads x 6.2 h at 1 kHz.  Larger sizes come from headers or sampling
#: rates that lie (a header claiming 10**11 samples, a rate of 0.001 Hz resampled to 100 Hz)
#: far more often than from real ECGs, and are refused before anything is allocated.
MAX_RECORD_VALUES = 2**28
#: Voltage unit as files spell it (lower-cased) -> factor to millivolts.  Anything else (e.g.
#: the "NU" of a plethysmogram) is not an ECG voltage.
VOLTAGE_UNITS = {
    "nv": 1e-6, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
}  # fmt: skip
#: The units a parameter or a model contract may name, with their factor to millivolts
#: (``ecgsoup.io`` reads records in mV).
UNIT_TO_MV = {unit: VOLTAGE_UNITS[unit.lower()] for unit in ("mV", "uV")}


def lead_indices(source_names, target_names, lead_map=None) -> np.ndarray:
    """Column of ``source_names`` holding each of ``target_names``, matched by name.

    Parameters
    ----------
    source_names : sequence of str
        Lead names of the data, in column order (any common spelling).
    target_names : sequence of str
        Lead names the model expects, in its order.
    lead_map : dict, optional
        ``{model lead: data lead}`` for leads stored under another name, e.g.
        ``{"II": "MLII"}``.

    Raises
    ------
    ValueError
        If a model lead is missing from the data (names the missing leads and
        what the data has) or a data lead name is duplicated.
    """
    lead_map = dict(lead_map or {})
    canon = [canonical_lead_name(n) or str(n) for n in source_names]
    if len(set(canon)) != len(canon):
        raise ValueError(f"Duplicate lead names in the data: {list(source_names)}.")
    position = {name: i for i, name in enumerate(canon)}
    position.update({str(n): i for i, n in enumerate(source_names)})
    found, missing = [], []
    for target in target_names:
        wanted = lead_map.get(target, target)
        key = canonical_lead_name(wanted) or str(wanted)
        if key in position:
            found.append(position[key])
        else:
            missing.append(target)
    if missing:
        raise ValueError(
            f"The model needs leads {missing} but the data has {list(source_names)}. "
            + _missing_lead_hint(missing, set(position))
        )
    return np.asarray(found, dtype=int)


#: Einthoven's and Goldberger's relations: each limb lead from I and II.
DERIVED_LEADS = {
    "III": (-1.0, 1.0),  # III = II - I
    "aVR": (-0.5, -0.5),  # aVR = -(I + II) / 2
    "aVL": (1.0, -0.5),  # aVL = I - II / 2
    "aVF": (-0.5, 1.0),  # aVF = II - I / 2
}


def _missing_lead_hint(missing, present) -> str:
    derivable = set(missing) <= set(DERIVED_LEADS) and {"I", "II"} <= set(present)
    if derivable:
        return (
            f"{', '.join(missing)} can be computed from I and II (Einthoven/Goldberger): pass "
            "derive_leads=True to the reader (`--derive-leads` on the command line); ecgsoup never "
            "fills a missing lead on its own. Or pass lead_map={model_lead: data_lead} for leads "
            "stored under another name."
        )
    return "Pass lead_map={model_lead: data_lead} for leads stored under another name."


def derive_limb_leads(x, lead_names):
    """Add the limb leads III, aVR, aVL, aVF that ``x`` lacks, computed from leads I and II.

    Einthoven and Goldberger: ``III = II - I``, ``aVR = -(I + II)/2``,
    ``aVL = I - II/2``, ``aVF = II - I/2``.  Many 12-lead machines store
    only I, II and V1-V6 for this reason.  Leads already present are never
    replaced.

    Parameters
    ----------
    x : ndarray of shape (..., time, leads)
        Time-major signals.
    lead_names : sequence of str
        Name of each lead of the last axis (any common spelling).

    Returns
    -------
    x : ndarray of shape (..., time, leads + n_derived)
        The input with the derived leads appended (float32, or the input's
        floating dtype), or ``x`` itself when nothing was missing.
    lead_names : tuple of str
        Canonical names, the derived ones last.
    derived : tuple of str
        The leads that were computed, in order; empty when none was.

    Raises
    ------
    ValueError
        If a limb lead is missing and I or II is missing too.
    """
    from ecgsoup.leads import canonical_lead_names

    names = canonical_lead_names(lead_names)
    missing = [lead for lead in DERIVED_LEADS if lead not in names]
    if not missing:
        return x, names, ()
    if "I" not in names or "II" not in names:
        raise ValueError(
            f"Cannot derive {missing}: they need leads I and II, and the data has {list(lead_names)}."
        )
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    lead_i = x[..., names.index("I")].astype(np.float64)
    lead_ii = x[..., names.index("II")].astype(np.float64)
    extra = [(DERIVED_LEADS[lead][0] * lead_i + DERIVED_LEADS[lead][1] * lead_ii).astype(dtype) for lead in missing]
    out = np.concatenate([x.astype(dtype, copy=False), np.stack(extra, axis=-1)], axis=-1)
    return out, names + tuple(missing), tuple(missing)


def _ratio(fs: float, target_fs: float) -> Fraction:
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    if abs(float(ratio) - target_fs / fs) > 1e-9 * (target_fs / fs):
        raise ValueError(f"Cannot resample {fs} Hz to {target_fs} Hz with a rational factor.")
    return ratio


def resample(x: np.ndarray, fs: float, target_fs: float, axis: int = -2) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``fs`` to ``target_fs``."""
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"Sampling rate must be a positive number, got {fs!r}.")
    if float(fs) == float(target_fs):
        return np.array(x, dtype=np.float32, copy=True)
    ratio = _ratio(float(fs), float(target_fs))
    shape = np.shape(x)
    axis = axis % len(shape)
    n_out = -(-shape[axis] * ratio.numerator // ratio.denominator)
    # One record is the time axis and what follows it (the leads); earlier axes are records.
    n_values = n_out * int(np.prod(shape[axis + 1 :], dtype=np.int64))
    if n_values > MAX_RECORD_VALUES:
        raise ValueError(
            f"Resampling {shape[axis]} samples from {fs:g} Hz to {target_fs:g} Hz gives {n_out} samples "
            f"per record ({n_values} values), more than ecgsoup handles at once ({MAX_RECORD_VALUES}); "
            "check the sampling rate, or split the recording."
        )
    out = sps.resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator, axis=axis)
    return out.astype(np.float32)


def resampled_length(n_samples: int, fs: float, target_fs: float) -> int:
    """Length of a signal of ``n_samples`` after :func:`resample`."""
    if float(fs) == float(target_fs):
        return int(n_samples)
    ratio = _ratio(float(fs), float(target_fs))
    return int(-(-n_samples * ratio.numerator // ratio.denominator))


def bandpass(x: np.ndarray, fs: float, low: float, high: float, axis: int = -2, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections, ``sosfiltfilt``)."""
    nyquist = fs / 2
    high = min(high, 0.99 * nyquist)
    sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, np.asarray(x, dtype=np.float64), axis=axis).astype(np.float32)


def zscore(x: np.ndarray, axis: int = -2) -> np.ndarray:
    """Per-lead z-score over time (ddof 0, +1e-8), as the ECG-Soup code does."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, keepdims=True)
    return ((x - mean) / (std + ZSCORE_EPS)).astype(np.float32)


def check_not_ragged(X, what: str = "X") -> None:
    """Refuse a list of records of different shapes in one line naming the fix (numpy's own message does not)."""
    if isinstance(X, np.ndarray) or not isinstance(X, (list, tuple)) or len(X) < 2:
        return
    shapes = [np.shape(x) for x in X]
    distinct = list(dict.fromkeys(shapes))
    if len(distinct) > 1:
        shown = ", ".join(str(s) for s in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
        raise ValueError(
            f"{what} is a list of {len(X)} records of {len(distinct)} different shapes ({shown}); records "
            "must share one length to be stacked: crop them to a common length (read_dataset(path, "
            "length=N) does), or embed them from their folder with `ecgsoup embed`, which takes any lengths."
        )


def check_finite(x: np.ndarray, what: str = "X", positions=None, lead_names=None) -> None:
    """Refuse NaN and inf, naming the records that hold them (the one NaN refusal of ecgsoup).

    Parameters
    ----------
    x : ndarray of shape (n_records, ...)
        Records along the first axis (a 1-D array is one record).
    what : str, default="X"
        What ``x`` is, for the message ("X", "pretraining data").
    positions : array of int, optional
        Index of each record of ``x`` in the caller's array, when ``x`` holds
        only some of its records.
    lead_names : sequence of str, optional
        Names of the leads on the last axis (time-major records): the message
        then also names the leads of the first bad record.

    Raises
    ------
    ValueError
        If any value is NaN or infinite.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        x = x.reshape(1, -1)
    # A boolean temporary the size of x would add a quarter of the input's
    # memory; checking a few MiB of records at a time keeps it constant.
    step = max(1, (8 * 2**20) // max(1, x[:1].size))
    for start in range(0, x.shape[0], step):
        if not np.isfinite(x[start : start + step]).all():
            break
    else:
        return
    # Something is wrong: locate it record by record (no full-size temporaries).
    bad = np.array([np.count_nonzero(~np.isfinite(record)) for record in x[start:]], dtype=np.int64)
    local = start + np.flatnonzero(bad)
    records = local if positions is None else np.asarray(positions)[local]
    shown = ", ".join(map(str, records[:5])) + (" ..." if records.size > 5 else "")
    leads = ""
    if lead_names is not None:
        first = ~np.isfinite(x[local[0]])
        names = [str(lead_names[j]) for j in np.flatnonzero(first.reshape(-1, first.shape[-1]).any(axis=0))]
        leads = f" (record {records[0]}: lead(s) {', '.join(names)})"
    raise ValueError(
        f"{what[:1].upper() + what[1:]} contains {int(bad.sum())} NaN or infinite values, in records "
        f"{shown}{leads}. Interpolate or drop those records first; ecgsoup does not fill gaps silently."
    )


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Starts of windows of ``window`` samples every ``stride`` samples, plus one flush with the end if needed."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return np.asarray(starts, dtype=int)


def as_time_major(X: np.ndarray, n_leads: int) -> np.ndarray:
    """Time-major ``(n, time, leads)`` view of 2-D flat or 3-D input, or a ValueError saying how to fix it.

    Flat input is ``(n_records, n_samples * n_leads)``, time-major (the layout of
    ``X.reshape(n, -1)`` for ``X`` of shape ``(n, time, leads)``).
    """
    if X.ndim == 3:
        if X.shape[2] != n_leads:
            hint = (
                " X looks lead-major (n, leads, time); pass X.transpose(0, 2, 1)."
                if X.shape[1] == n_leads
                else ""
            )
            raise ValueError(
                f"X has {X.shape[2]} leads on its last axis but lead_names lists {n_leads}."
                f"{hint} Input is time-major: (n_records, n_samples, n_leads)."
            )
        return X
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, time*leads) or 3-D (n, time, leads); got {X.ndim}-D.")
    if X.shape[1] % n_leads:
        raise ValueError(
            f"X has {X.shape[1]} columns, not a whole number of samples for the {n_leads} "
            f"leads in lead_names; flat input is (n_records, n_samples * n_leads), time-major."
        )
    if flat_layout(X, n_leads) == "lead-major":
        raise ValueError(
            f"X (flat, {X.shape[1]} columns) looks lead-major: all samples of one lead, then the next, as "
            "ECGPreprocessor outputs and LayerwiseEmbedder takes. Recordings given flat are time-major "
            "(X.reshape(n, -1) of (n_records, n_samples, n_leads)): pass the recordings as 3-D "
            "(n_records, n_samples, n_leads), or a lead-major X as X.reshape(n, n_leads, -1).transpose(0, 2, 1)."
        )
    return X.reshape(X.shape[0], X.shape[1] // n_leads, n_leads)


# Flat ECG arrays carry no shape, so a time-major one (t0: every lead, t1: every lead, ...) and a
# lead-major one (lead 0: every sample, lead 1: ...) of the same width are both accepted by a
# reshape.  An ECG changes little from one sample to the next: in the right layout, neighbours in
# time (1 apart lead-major, n_leads apart time-major) differ much less than the other pair.
_LAYOUT_RATIO = 2.0  # how much smaller the neighbours' differences must be to call the layout
_LAYOUT_RECORDS = 32  # records looked at (the decision is the median over them)


def flat_layout(X: np.ndarray, n_leads: int) -> str:
    """``"time-major"``, ``"lead-major"`` or ``"unknown"``: the layout a flat ECG array ``(n, T * n_leads)`` has.

    Decided from the signal: the mean absolute difference between neighbours in
    time is clearly smaller (by a factor of 2 or more, median over up to 32
    records) in the true layout than in the other.  White noise, constant rows
    and one-lead input are ``"unknown"`` (both readings are the same).
    """
    X = np.asarray(X)
    if X.ndim != 2 or n_leads < 2 or X.shape[1] % n_leads or X.shape[1] // n_leads < 4 or not len(X):
        return "unknown"
    rows = np.asarray(X[:_LAYOUT_RECORDS], dtype=np.float64)
    if not np.isfinite(rows).all():
        return "unknown"
    step1 = np.abs(np.diff(rows, axis=1)).mean(axis=1)  # lead-major neighbours in time
    stepL = np.abs(rows[:, n_leads:] - rows[:, :-n_leads]).mean(axis=1)  # time-major neighbours in time
    keep = (step1 > 0) & (stepL > 0)
    if not keep.any():
        return "unknown"
    ratio = float(np.median(stepL[keep] / step1[keep]))
    if ratio >= _LAYOUT_RATIO:
        return "lead-major"
    if ratio <= 1 / _LAYOUT_RATIO:
        return "time-major"
    return "unknown"
