"""The batched logistic probe against scikit-learn's, row by row, on the real PTB-XL subset.

Runs :func:`ecgsoup.benchmark.ptbxl` once with the probes ``logistic`` (every class and
every C in one batched L-BFGS solve per training split) and ``logistic-sklearn`` (the
reference: scikit-learn's one-vs-rest logistic regression, fitted class by class and C by
C), on the same embeddings, and writes ``benchmarks/results/ptbxl_probe_agreement.{json,md}``:
every row's macro AUC under both probes, the largest difference (the batched probe must stay
within 0.002), the C each chose, and the seconds of fits each probe took per task (one
process, so the two are comparable).

Run:  .venv/bin/python benchmarks/ptbxl_probe_agreement.py [--tasks super rhythm form] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data_path, write_results  # noqa: E402

from ecgsoup.benchmark import ptbxl  # noqa: E402

TOLERANCE = 0.002


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["super", "rhythm", "form"])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache", default=None, help="embedding and feature cache shared with other runs")
    parser.add_argument("--no-pma", action="store_true", help="leave out the PMA rows (a gate trained per split)")
    parser.add_argument("--no-features", action="store_true", help="leave out the clinical-features rows")
    parser.add_argument("--no-random", action="store_true", help="leave out the random-weights row")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args(argv)

    root = shared_data_path() / "ptbxl_zscored_subset"
    result = ptbxl(root, model=args.model, tasks=args.tasks, probes=("logistic", "logistic-sklearn"),
                   n_bootstrap=args.bootstrap, cache=args.cache, pma=not args.no_pma, features=not args.no_features,
                   random_baseline=not args.no_random, n_jobs=1, verbose=True)  # fmt: skip
    table = result.table.set_index(["task", "representation", "probe"])
    rows = []
    for task, rep in dict.fromkeys(zip(result.table["task"], result.table["representation"])):
        new, old = table.loc[(task, rep, "logistic")], table.loc[(task, rep, "logistic-sklearn")]
        rows.append({"task": task, "representation": rep, "auc": float(new["auc"]),
                     "auc_sklearn": float(old["auc"]), "difference": float(new["auc"] - old["auc"]),
                     "difference_present": float(new["auc_present"] - old["auc_present"]),
                     "chosen": new["chosen"], "chosen_sklearn": old["chosen"]})  # fmt: skip
    largest = max(max(abs(r["difference"]), abs(r["difference_present"])) for r in rows)
    seconds = result.timings["probes"]
    payload = {"tasks": args.tasks, "model": result.model, "source": result.source, "tolerance": TOLERANCE,
               "largest_difference": largest, "within_tolerance": largest <= TOLERANCE,
               "fit_seconds": seconds, "timings_s": result.timings, "rows": rows}  # fmt: skip
    lines = ["# Batched logistic probe against scikit-learn's, on the PTB-XL subset", "",
             f"Model: `{result.model}`. Data: {result.source}. Tasks: {', '.join(args.tasks)}. "
             f"Largest |difference| of macro AUC over every row (both variants): **{largest:.5f}** "
             f"(tolerance {TOLERANCE}).", "",
             "| task | batched probe: seconds of fits | scikit-learn: seconds of fits | speed-up |", "|---|---:|---:|---:|"]
    for task in args.tasks:
        new, old = seconds[task]["logistic"], seconds[task]["logistic-sklearn"]
        lines.append(f"| {task} | {new:.1f} | {old:.1f} | {old / max(new, 1e-9):.1f}x |")
    lines += ["", "| task | representation | AUC batched | AUC scikit-learn | difference | C batched | C scikit-learn |",
              "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['representation']} | {r['auc']:.4f} | {r['auc_sklearn']:.4f} | "
                     f"{r['difference']:+.5f} | {r['chosen']} | {r['chosen_sklearn']} |")
    write_results("ptbxl_probe_agreement", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if largest <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
