"""How fast is ECGFeatures?  Records per second on LUDB (500 Hz, 12 leads, 10 s).

Times ``ECGFeatures(...).fit_transform`` on the first ``--records`` LUDB
records with ``n_jobs=1`` and ``n_jobs=2`` (the median of ``--repeats`` runs
after one untimed warm-up run, which also starts the joblib workers), at the
default analysis rate (250 Hz), plus the native 500 Hz with ``n_jobs=1``
for comparison.  The machine's load
and other processes' CPU share are recorded under ``quiet``: run it on a
quiet machine.  Writes ``benchmarks/results/features_speed.{json,md}``.

Run:  .venv/bin/python benchmarks/features_speed.py [--records 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet_status, shared_data_path, summary, timed, write_results  # noqa: E402

from ecgsoup import ECGFeatures  # noqa: E402

TARGET = 20.0  # records/s on 2 cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
    x, fs, leads = data["x"][: args.records], float(data["fs"]), [str(n) for n in data["lead_names"]]
    settings = [
        {"n_jobs": 1, "analysis_rate": 250},
        {"n_jobs": 2, "analysis_rate": 250},
        {"n_jobs": 1, "analysis_rate": None},
    ]
    rows = []
    for params in settings:
        features = ECGFeatures(sampling_rate=fs, lead_names=leads, units="normalized", **params)
        cold, _ = timed(features.fit_transform, x)
        runs = [timed(features.fit_transform, x)[0] for _ in range(args.repeats)]
        stats = summary(runs)
        rate = len(x) / stats["median_s"]
        rows.append({**params, "records": len(x), "cold_s": cold, **stats, "records_per_s": rate})
        print(f"n_jobs={params['n_jobs']} analysis_rate={params['analysis_rate']}: {rate:.1f} records/s "
              f"(median of {args.repeats}; first call {cold:.1f} s)")  # fmt: skip
    quiet = quiet_status()

    lines = [
        "# ECGFeatures speed",
        "",
        f"`ECGFeatures(units=\"normalized\").fit_transform` on {len(x)} LUDB records (500 Hz, 12 leads, "
        f"10 s), median of {args.repeats} runs after an untimed first call (which, with `n_jobs=2`, also "
        f"starts the joblib workers). Target: {TARGET:g} records/s on 2 cores.",
        "",
        "| n_jobs | analysis rate | records/s | median s | min s | max s | first call s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r['analysis_rate']} Hz (default)" if r["analysis_rate"] else "native (500 Hz)"
        lines.append(
            f"| {r['n_jobs']} | {rate} | "
            f"{r['records_per_s']:.1f} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} | {r['cold_s']:.2f} |"
        )
    load = quiet["load_at_start_1_5_15min"]
    lines += ["", f"Load average at the start / end (1 min): {load and load[0]} / "
              f"{quiet['load_at_end_1_5_15min'] and quiet['load_at_end_1_5_15min'][0]}; other processes' CPU share "
              f"at the end: {quiet['other_processes_cpu_share']}."]  # fmt: skip
    write_results("features_speed", {"rows": rows, "target_records_per_s": TARGET, "quiet": quiet,
                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, "\n".join(lines) + "\n")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
