"""How close are ECGFeatures' intervals to cardiologists' annotations?  LUDB, all 200 records.

LUDB ships the P, QRS and T onsets and offsets that cardiologists marked in
every lead of every record.  From the lead II annotations this script takes
per-record medians of

* PR  = P onset -> QRS onset (of the same beat),
* QRS = QRS onset -> QRS offset,
* QT  = QRS onset -> T offset (of the same beat),

and the heart rate from the annotated QRS peaks, and compares them with
``ECGFeatures``' ``pr_ms``, ``qrs_ms``, ``qt_ms`` and ``hr_bpm`` computed from
the 500 Hz signals (analysed at 250 Hz, the default, and at their native
500 Hz).  It also checks the heart rate against LUDB's rhythm statements
(sinus bradycardia < 60 bpm, tachycardia > 100 bpm, sinus rhythm 60-100) and
summarises ``qrs_axis_deg`` per LUDB axis statement.

LUDB's amplitudes are range-normalised per lead by its publisher, so
``units="normalized"`` (no amplitude columns) and the axis is only
approximate.  Writes ``benchmarks/results/features_validation.{json,md}``.

Run:  .venv/bin/python benchmarks/features_validation.py [--n-jobs 2] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data_path, write_results  # noqa: E402

from ecgsoup import ECGFeatures  # noqa: E402

INTERVALS = ("pr_ms", "qrs_ms", "qt_ms")
# Axis statements of LUDB (Russian convention) and the range each implies, in degrees.
AXIS_RANGES = {
    "normal": (30, 70),
    "horizontal": (0, 30),
    "vertical": (70, 90),
    "left axis deviation": (-90, 0),
    "right axis deviation": (90, 180),
}


def waves(annotation) -> dict[str, list[tuple[float, int, float]]]:
    """``{"p"|"N"|"t": [(onset, peak, offset), ...]}`` from one lead's annotation, NaN where unmarked."""
    symbols, samples = list(annotation.symbol), list(annotation.sample)
    found: dict[str, list] = {"p": [], "N": [], "t": []}
    for i, symbol in enumerate(symbols):
        if symbol not in found:
            continue
        onset = samples[i - 1] if i > 0 and symbols[i - 1] == "(" else np.nan
        offset = samples[i + 1] if i + 1 < len(symbols) and symbols[i + 1] == ")" else np.nan
        found[symbol].append((float(onset), int(samples[i]), float(offset)))
    return found


def annotated_record(annotation, fs: float) -> dict:
    """Median PR, QRS, QT (ms) and the heart rate of one record's lead II annotation."""
    w = waves(annotation)
    qrs = w["N"]
    peaks = np.array([q[1] for q in qrs])
    pr, width, qt = [], [], []
    for k, (on, peak, off) in enumerate(qrs):
        previous = qrs[k - 1][1] if k else -np.inf
        following = qrs[k + 1][1] if k + 1 < len(qrs) else np.inf
        p = [wave for wave in w["p"] if previous < wave[1] < peak]
        t = [wave for wave in w["t"] if peak < wave[1] < following]
        if p:
            pr.append(on - p[-1][0])
        width.append(off - on)
        if t:
            qt.append(t[0][2] - on)

    def median_ms(values):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        return float(np.median(values) / fs * 1000) if len(values) else np.nan

    rr = np.diff(peaks) / fs
    return {
        "pr_ms": median_ms(pr),
        "qrs_ms": median_ms(width),
        "qt_ms": median_ms(qt),
        "hr_bpm": float(60 / rr.mean()) if len(rr) else np.nan,
        "n_annotated_beats": len(qrs),
    }


def read_annotations(folder: Path, record_ids, fs: float) -> pd.DataFrame:
    import wfdb

    rows = [annotated_record(wfdb.rdann(str(folder / str(rid)), "ii"), fs) for rid in record_ids]
    return pd.DataFrame(rows, index=pd.Index(record_ids, name="record_id"))


def compare(measured: pd.DataFrame, annotated: pd.DataFrame, column: str) -> dict:
    a, m = annotated[column], measured[column]
    both = a.notna() & m.notna()
    error = (m[both] - a[both]).abs()
    return {
        "n_annotated": int(a.notna().sum()),
        "n_compared": int(both.sum()),
        "n_nan_measured": int(m.isna().sum()),
        "median_abs_error": float(error.median()),
        "p90_abs_error": float(error.quantile(0.9)),
        "median_signed_error": float((m[both] - a[both]).median()),
        "annotated_median": float(a[both].median()),
        "measured_median": float(m[both].median()),
    }


def rhythm_checks(hr: pd.Series, rhythm: pd.Series) -> dict:
    out = {}
    for label, ok in (
        ("Sinus bradycardia", lambda h: h < 60),
        ("Sinus tachycardia", lambda h: h > 100),
        ("Sinus rhythm", lambda h: (h >= 60) & (h <= 100)),
    ):
        h = hr[rhythm == label]
        out[label] = {"n": int(len(h)), "n_nan": int(h.isna().sum()), "fraction_in_range": float(ok(h.dropna()).mean())}
    return out


def af_summary(F: pd.DataFrame, rhythm: pd.Series) -> dict:
    """P-wave fraction and RR irregularity in atrial fibrillation / flutter vs every other record."""
    from sklearn.metrics import roc_auc_score

    af = rhythm.isin(["Atrial fibrillation", "Atrial flutter"]).to_numpy()
    out = {"n_af_or_flutter": int(af.sum()), "n_other": int((~af).sum())}
    for column, sign in (("p_wave_fraction", -1), ("rr_cv", 1)):
        v = F[column].to_numpy()
        ok = np.isfinite(v)
        out[column] = {
            "median_af": float(np.median(v[af & ok])),
            "median_other": float(np.median(v[~af & ok])),
            "auc_af_vs_other": float(roc_auc_score(af[ok], sign * v[ok])),
        }
    return out


def axis_summary(axis: pd.Series, labels: pd.Series) -> dict:
    out = {}
    for label, (lo, hi) in AXIS_RANGES.items():
        a = axis[labels == label].dropna()
        out[label] = {
            "n": int((labels == label).sum()),
            "expected_range_deg": [lo, hi],
            "median_deg": float(a.median()) if len(a) else None,
            "iqr_deg": [float(a.quantile(0.25)), float(a.quantile(0.75))] if len(a) else None,
            "fraction_in_range": float(a.between(lo, hi).mean()) if len(a) else None,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N records only (a quick look)")
    args = parser.parse_args()

    ludb = shared_data_path() / "ludb"
    data = np.load(ludb / "ludb_12lead_500hz.npz")
    x, fs = data["x"][: args.limit], float(data["fs"])
    record_ids = data["record_id"][: args.limit].tolist()
    lead_names = [str(n) for n in data["lead_names"]]
    labels = pd.read_csv(ludb / "ludb_labels.csv").set_index("record_id").loc[record_ids]
    annotated = read_annotations(ludb / "annotations", record_ids, fs)

    results, tables = {}, {}
    for rate in (250, None):
        features = ECGFeatures(sampling_rate=fs, lead_names=lead_names, units="normalized", analysis_rate=rate, n_jobs=args.n_jobs)
        start = time.perf_counter()
        F = features.set_output(transform="pandas").fit_transform(x)
        seconds = time.perf_counter() - start
        F.index = annotated.index
        key = f"{rate or int(fs)}hz"
        report = features.report_
        failed = report["failed_steps"].str.split("; ").explode()
        results[key] = {
            "analysis_rate_hz": rate or fs,
            "seconds": seconds,
            "intervals": {c: compare(F, annotated, c) for c in (*INTERVALS, "hr_bpm")},
            "rhythm": rhythm_checks(F["hr_bpm"], labels["rhythm_primary"]),
            "rhythm_annotated_rate": rhythm_checks(annotated["hr_bpm"], labels["rhythm_primary"]),
            "axis": axis_summary(F["qrs_axis_deg"], labels["axis"]),
            "atrial_fibrillation": af_summary(F, labels["rhythm_primary"]),
            "failed_steps": {k: int(v) for k, v in failed[failed != ""].value_counts().items()},
            "rhythm_leads": {k: int(v) for k, v in report["lead"].value_counts().items()},
            "neurokit_warnings": int(report["n_warnings"].sum()),
        }
        tables[key] = F
        print(f"{key}: {seconds:.1f} s; " + ", ".join(
            f"{c} median |err| {results[key]['intervals'][c]['median_abs_error']:.1f}" for c in (*INTERVALS, "hr_bpm")
        ))  # fmt: skip

    main_key = "250hz"
    lines = [
        "# ECGFeatures against cardiologists' annotations (LUDB)",
        "",
        f"{len(record_ids)} LUDB records, 500 Hz, 12 leads. Reference: per-record medians over the beats "
        "annotated in lead II (PR = P onset to QRS onset, QRS = onset to offset, QT = QRS onset to T "
        "offset; heart rate from the annotated QRS peaks). Measured: `ECGFeatures(units=\"normalized\")` "
        "(R peaks and neurokit2's `prominence` delineation on lead II, another lead where R peaks fail "
        "in II). Absolute errors in ms (bpm for heart rate). "
        "The annotations cover the whole record except its first and last beats, the features every "
        "detected beat, so medians are comparable but not beat-matched.",
        "",
        "| feature | analysis rate | n compared | NaN | median abs error | 90th pct abs error | median signed error | annotated median | measured median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in results:
        for c, r in results[key]["intervals"].items():
            lines.append(
                f"| `{c}` | {results[key]['analysis_rate_hz']:g} Hz | {r['n_compared']} | {r['n_nan_measured']} | "
                f"{r['median_abs_error']:.1f} | {r['p90_abs_error']:.1f} | {r['median_signed_error']:+.1f} | "
                f"{r['annotated_median']:.1f} | {r['measured_median']:.1f} |"
            )
    lines += ["", "## Heart rate vs LUDB rhythm statements (default analysis rate, 250 Hz)", "",
              "The last column applies the same test to the rate of the annotated QRS peaks: where it is low "
              "too, the statement's threshold differs from the one tested here, not the measurement.", "",
              "| rhythm (`rhythm_primary`) | records | NaN | range | fraction in range (`hr_bpm`) | fraction in range (annotated rate) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    ranges = {"Sinus bradycardia": "< 60 bpm", "Sinus tachycardia": "> 100 bpm", "Sinus rhythm": "60-100 bpm"}
    for label, r in results[main_key]["rhythm"].items():
        ref = results[main_key]["rhythm_annotated_rate"][label]
        lines.append(f"| {label} | {r['n']} | {r['n_nan']} | {ranges[label]} | {r['fraction_in_range']:.2f} | "
                     f"{ref['fraction_in_range']:.2f} |")  # fmt: skip
    af = results[main_key]["atrial_fibrillation"]
    lines += ["", "## Atrial fibrillation and flutter (default analysis rate, 250 Hz)", "",
              f"{af['n_af_or_flutter']} records with atrial fibrillation or flutter (`rhythm_primary`) vs "
              f"{af['n_other']} others. AUC: how well the feature alone separates them (low P-wave "
              "fraction, high RR irregularity).", "",
              "| feature | median, AF / flutter | median, others | AUC |", "|---|---|---|---|"]  # fmt: skip
    for column in ("p_wave_fraction", "rr_cv"):
        r = af[column]
        lines.append(f"| `{column}` | {r['median_af']:.2f} | {r['median_other']:.2f} | {r['auc_af_vs_other']:.3f} |")
    lines += ["", "## QRS axis vs LUDB axis statements (default analysis rate, 250 Hz)", "",
              "Expected ranges follow the convention of LUDB's statements (normal 30-70, horizontal 0-30, "
              "vertical 70-90, left deviation below 0, right deviation above 90 degrees).", "",
              "LUDB's amplitudes are range-normalised per lead by its publisher, which distorts the angle "
              "(only its quadrant is reliable); this table is a plausibility check, not a validation.", "",
              "| axis statement | records | expected range (deg) | median (deg) | IQR (deg) | fraction in range |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for label, r in results[main_key]["axis"].items():
        if r["median_deg"] is None:
            continue
        lines.append(
            f"| {label} | {r['n']} | {r['expected_range_deg'][0]} to {r['expected_range_deg'][1]} | "
            f"{r['median_deg']:.0f} | {r['iqr_deg'][0]:.0f} to {r['iqr_deg'][1]:.0f} | {r['fraction_in_range']:.2f} |"
        )
    lines += ["", "## Failures and time", ""]
    for r in results.values():
        lines.append(
            f"- {r['analysis_rate_hz']:g} Hz: {r['seconds']:.1f} s for {len(record_ids)} records "
            f"(n_jobs={args.n_jobs}, machine not quiet: timings are in features_speed.md); "
            f"failed steps {r['failed_steps'] or 'none'}; R peaks on {r['rhythm_leads']}; "
            f"{r['neurokit_warnings']} neurokit2 warnings silenced."
        )
    payload = {"n_records": len(record_ids), "results": results,
               "per_record": {k: t.reset_index().to_dict(orient="list") for k, t in tables.items()},
               "annotated": annotated.reset_index().to_dict(orient="list")}  # fmt: skip
    write_results("features_validation", payload, "\n".join(lines) + "\n", timing=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
