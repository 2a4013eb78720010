"""A simple handcrafted baseline: neurokit2 rhythm, HRV and interval features.

What a clinical researcher without a foundation model would compute first:
heart rate and its variability from R peaks in lead II, the fraction of beats
with a detectable P wave (atrial fibrillation has none), PR / QRS / QT
durations from the wavelet delineation, and the sign of the net QRS area in
leads I and aVF (a crude electrical axis).  Records where a step fails give
NaN for that feature; the probe imputes them with the training median.

Used by ``benchmarks/quality.py`` and ``benchmarks/reproduce.py`` as the
"no deep learning" reference row.  It is a benchmark helper, not part of the
package API.
"""

from __future__ import annotations

import warnings

import numpy as np

FEATURES = (
    "n_beats", "hr_mean", "hr_std", "rr_cv", "rmssd_ms", "sdnn_ms", "pnn50",
    "p_wave_fraction", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_area_I", "qrs_area_aVF",
)  # fmt: skip


def _median_duration(onsets, offsets, fs: float) -> float:
    on, off = np.asarray(onsets, dtype=float), np.asarray(offsets, dtype=float)
    n = min(len(on), len(off))
    widths = (off[:n] - on[:n]) / fs * 1000
    widths = widths[np.isfinite(widths) & (widths > 0)]
    return float(np.median(widths)) if len(widths) else np.nan


def record_features(signal: np.ndarray, fs: float, lead_names) -> np.ndarray:
    """Features of one record ``(time, leads)`` in mV; NaN where a step fails."""
    import neurokit2 as nk

    names = list(lead_names)
    out = dict.fromkeys(FEATURES, np.nan)
    lead_ii = signal[:, names.index("II")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cleaned = nk.ecg_clean(lead_ii, sampling_rate=fs)
            _, info = nk.ecg_peaks(cleaned, sampling_rate=fs)
            peaks = np.asarray(info["ECG_R_Peaks"])
        except Exception:  # neurokit2 raises many kinds on flat or noisy leads
            return np.array([out[f] for f in FEATURES])
        out["n_beats"] = len(peaks)
        if len(peaks) >= 3:
            rr = np.diff(peaks) / fs * 1000
            out.update(
                hr_mean=60000 / rr.mean(), hr_std=float(np.std(60000 / rr)), rr_cv=rr.std() / rr.mean(),
                rmssd_ms=float(np.sqrt(np.mean(np.diff(rr) ** 2))), sdnn_ms=float(rr.std()),
                pnn50=float(np.mean(np.abs(np.diff(rr)) > 50)),
            )  # fmt: skip
            try:
                _, waves = nk.ecg_delineate(cleaned, peaks, sampling_rate=fs, method="dwt")
                p_peaks = np.asarray(waves["ECG_P_Peaks"], dtype=float)
                out["p_wave_fraction"] = float(np.mean(np.isfinite(p_peaks)))
                out["pr_ms"] = _median_duration(waves["ECG_P_Onsets"], waves["ECG_R_Onsets"], fs)
                out["qrs_ms"] = _median_duration(waves["ECG_R_Onsets"], waves["ECG_R_Offsets"], fs)
                out["qt_ms"] = _median_duration(waves["ECG_R_Onsets"], waves["ECG_T_Offsets"], fs)
                out["qtc_ms"] = out["qt_ms"] / np.sqrt(np.mean(rr) / 1000)  # Bazett
            except Exception:
                pass
        half = int(0.05 * fs)  # +-50 ms around each R peak
        for lead in ("I", "aVF"):
            x = signal[:, names.index(lead)]
            areas = [x[max(p - half, 0) : p + half].sum() / fs for p in peaks]
            out[f"qrs_area_{lead}"] = float(np.median(areas)) if areas else np.nan
    return np.array([out[f] for f in FEATURES], dtype=float)


def handcrafted_features(X: np.ndarray, fs: float, lead_names) -> np.ndarray:
    """Feature matrix ``(n_records, len(FEATURES))`` for time-major records in mV."""
    return np.stack([record_features(x, fs, lead_names) for x in X])
