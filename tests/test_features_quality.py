"""ECGFeatures' ``quality`` column is neurokit2's templatematch quality, value for value.

ECGFeatures computes it without neurokit2's pandas epoching (for speed); these tests
recompute it with ``nk.ecg_quality`` itself on the same cleaned lead and R peaks, over real
records and over the edge cases (few beats, beats whose window runs off either end of the
record, records too short for neurokit2).
"""

import warnings

import numpy as np
import pytest

from ecgsoup import ECGFeatures, load_sample

nk = pytest.importorskip("neurokit2")

N_PTBXL = 100


def _neurokit_quality(x, fs, lead_names, lead):
    """R peaks and mean ``nk.ecg_quality(templatematch)`` of one lead (None where neurokit2 raises).

    ``fs`` must be the analysis rate (records here are at or below 250 Hz, so nothing is
    resampled), and the cleaning and peak detection are ECGFeatures'.
    """
    lead_signal = np.asarray(x[:, list(lead_names).index(lead)], dtype=np.float64)  # as ECGFeatures
    cleaned = nk.ecg_clean(lead_signal, sampling_rate=fs)
    _, info = nk.ecg_peaks(cleaned, sampling_rate=fs)
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
    try:
        quality = nk.ecg_quality(cleaned, rpeaks=peaks, sampling_rate=fs, method="templatematch")
    except Exception:
        return peaks, None
    return peaks, float(np.nanmean(quality))


def _quality_against_neurokit(X, fs, lead_names):
    """ECGFeatures' quality and neurokit2's, per record, and the R peaks neurokit2 found."""
    assert fs <= 250
    feats = ECGFeatures(sampling_rate=fs, lead_names=lead_names, units="normalized", n_jobs=1)
    F = feats.set_output(transform="pandas").fit_transform(X)
    ours, reference, all_peaks = [], [], []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # neurokit2's and numpy's, as ECGFeatures silences them
        for x, quality, row in zip(X, F["quality"], feats.report_.itertuples()):
            if "r_peaks" in row.failed_steps or row.lead == "":
                assert np.isnan(quality)
                continue
            peaks, ref = _neurokit_quality(x, fs, lead_names, row.lead)
            if ref is None:  # neurokit2 raises: ECGFeatures reports the step and gives NaN
                assert np.isnan(quality) and "quality" in row.failed_steps
            ours.append(quality)
            reference.append(np.nan if ref is None else ref)
            all_peaks.append(peaks)
    return np.array(ours), np.array(reference), all_peaks


def _assert_same(ours, reference):
    assert len(ours) == len(reference)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)  # NaN where neurokit2 gives NaN


def test_quality_equals_neurokit_on_real_ptbxl_records(shared_data):
    data = np.load(shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_val.npz")
    X = data["x"][:N_PTBXL] / 1000.0
    ours, reference, _ = _quality_against_neurokit(X, float(data["fs"]), [str(n) for n in data["lead_names"]])
    assert len(ours) >= N_PTBXL - 2 and np.isfinite(ours).sum() >= N_PTBXL - 5
    _assert_same(ours, reference)


def test_quality_equals_neurokit_on_the_bundled_sample():
    ds = load_sample()
    ours, reference, _ = _quality_against_neurokit(ds.X[:30], float(ds.sampling_rate), ds.lead_names)
    assert np.isfinite(ours).sum() >= 25
    _assert_same(ours, reference)


def test_quality_equals_neurokit_for_few_beats_and_short_records():
    fs = 250.0
    leads = ("I", "II")
    records = {}
    # 20 bpm over 10 s: 3 beats (neurokit2's rate, hence its quality, fails); 25-40 bpm: 4-7 beats.
    for heart_rate in (20, 25, 30, 40):
        ecg = nk.ecg_simulate(duration=10, sampling_rate=int(fs), heart_rate=heart_rate, random_state=1)
        records[f"{heart_rate} bpm"] = np.stack([ecg, 0.5 * ecg], axis=1)
    # Under 4 s neurokit2 refuses to segment cycles.
    ecg = nk.ecg_simulate(duration=3.5, sampling_rate=int(fs), heart_rate=70, random_state=2)
    records["3.5 s"] = np.stack([ecg, 0.5 * ecg], axis=1)
    n_beats = []
    for x in records.values():
        ours, reference, peaks = _quality_against_neurokit(x[None], fs, leads)
        _assert_same(ours, reference)
        n_beats.append(len(peaks[0]) if peaks else 0)
    assert min(n_beats) <= 3 and any(4 <= n <= 5 for n in n_beats)


def test_quality_equals_neurokit_with_beats_at_the_edges(shared_data):
    data = np.load(shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_test.npz")
    fs, leads = float(data["fs"]), [str(n) for n in data["lead_names"]]
    near_start = near_end = 0
    for x in data["x"][:4] / 1000.0:
        cleaned = nk.ecg_clean(x[:, leads.index("II")], sampling_rate=fs)
        peaks = nk.ecg_peaks(cleaned, sampling_rate=fs)[1]["ECG_R_Peaks"]
        for shift in (20, 40, 80, 100):
            # Start a little before the second beat and end a little after the second-last one.
            crop = x[peaks[1] - shift : peaks[-2] + shift + 1]
            ours, reference, found = _quality_against_neurokit(crop[None], fs, leads)
            _assert_same(ours, reference)
            # A beat closer to an end than ~half a cycle: its window runs off the record.
            half_cycle = 0.45 * np.median(np.diff(found[0]))
            near_start += found[0][0] < half_cycle
            near_end += found[0][-1] > len(crop) - half_cycle
    assert near_start > 0 and near_end > 0
