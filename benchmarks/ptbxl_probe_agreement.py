"""The logistic probe against scikit-learn's, row by row, on the real PTB-XL subset, and its speed at scale.

Runs :func:`ecgsoup.benchmark.ptbxl` once with the probes ``logistic`` (scikit-learn's
L-BFGS fit for every class and C, run side by side with their evaluations batched into
matrix products) and ``logistic-sklearn`` (the reference: scikit-learn's one-vs-rest
logistic regression pipeline, fitted class by class and C by C), on the same embeddings,
and writes ``benchmarks/results/ptbxl_probe_agreement.{json,md}``: every row's macro AUC
under both probes, the largest difference (the tolerance is 0.002), the C each chose, and
the seconds of fits each probe took per task (summed over the processes of ``--n-jobs``, which
the two probes share, so the two are comparable).

At the subset's size a training split has about 700 records.  ``--scale-rows`` also times
both solvers on one training split of that many rows (the real split's embeddings tiled
with noise: timing only, no AUC is reported from it), interleaved, and reports the median
seconds and their ratio.

Run:  .venv/bin/python benchmarks/ptbxl_probe_agreement.py [--tasks ...] [--cache DIR] [--scale-rows 8700]
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
    parser.add_argument("--tasks", nargs="+", default=["all", "diag", "sub", "super", "form", "rhythm"])
    parser.add_argument("--model", default="default")
    parser.add_argument("--cache", default=None, help="embedding and feature cache shared with other runs")
    parser.add_argument("--no-pma", action="store_true", help="leave out the PMA rows (a gate trained per split)")
    parser.add_argument("--no-features", action="store_true", help="leave out the clinical-features rows")
    parser.add_argument("--no-random", action="store_true", help="leave out the random-weights row")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--scale-rows", type=int, default=0, help="also time one training split of this many rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=1, help="processes for the fits (both probes share them)")
    args = parser.parse_args(argv)

    root = shared_data_path() / "ptbxl_zscored_subset"
    result = ptbxl(root, model=args.model, tasks=args.tasks, probes=("logistic", "logistic-sklearn"),
                   n_bootstrap=args.bootstrap, cache=args.cache, pma=not args.no_pma, features=not args.no_features,
                   random_baseline=not args.no_random, n_jobs=args.n_jobs, verbose=True)  # fmt: skip
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
    lines = ["# The logistic probe against scikit-learn's, on the PTB-XL subset", "",
             f"Model: `{result.model}`. Data: {result.source}. Tasks: {', '.join(args.tasks)}. "
             f"Largest |difference| of macro AUC over every row (both variants): **{largest:.5f}** "
             f"(tolerance {TOLERANCE}).", "",
             "| task | logistic probe: seconds of fits | scikit-learn: seconds of fits | speed-up |", "|---|---:|---:|---:|"]
    for task in args.tasks:
        new, old = seconds[task]["logistic"], seconds[task]["logistic-sklearn"]
        lines.append(f"| {task} | {new:.1f} | {old:.1f} | {old / max(new, 1e-9):.1f}x |")
    lines += ["", "| task | representation | AUC logistic | AUC scikit-learn | difference | choice logistic | choice scikit-learn |",
              "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['representation']} | {r['auc']:.4f} | {r['auc_sklearn']:.4f} | "
                     f"{r['difference']:+.5f} | {r['chosen']} | {r['chosen_sklearn']} |")
    if args.scale_rows:
        payload["at_scale"] = at_scale(root, args.model, args.cache, args.scale_rows, args.repeats)
        lines += ["", *scale_lines(payload["at_scale"])]
    write_results("ptbxl_probe_agreement", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def at_scale(root, model, cache, n_rows, repeats, task_name="all", layer=6, seed=0):
    """Seconds of one training split's fits (every class, the four Cs) by both solvers, interleaved."""
    import time

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from threadpoolctl import threadpool_limits

    from ecgsoup.backbones import load_backbone
    from ecgsoup.benchmark import DEFAULT_CS, load_ptbxl_benchmark_data, one_vs_rest_logistic
    from ecgsoup.embedding import LayerwiseEmbedder
    from ecgsoup.fusion import LayerSelector
    from ecgsoup.preprocessing import ECGPreprocessor
    from ecgsoup.tasks import ptbxl_task_labels

    data = load_ptbxl_benchmark_data(root)
    rows = np.flatnonzero(data.labelled & np.isin(data.fold, range(1, 9)))
    labels = ptbxl_task_labels([data.codes[i] for i in rows], data.statements, task_name)
    classes = sorted({c for lab in labels for c in lab})
    Y = np.array([[c in lab for c in classes] for lab in labels], dtype=int)
    encoder = load_backbone(model)
    X = ECGPreprocessor(sampling_rate=data.sampling_rate, lead_names=data.lead_names, model=encoder).fit_transform(data.X[rows])
    embedder = LayerwiseEmbedder(model=encoder, memory=cache, verbose=0)
    embeddings = embedder.fit_transform(X)
    Z = LayerSelector(layers=layer, layer_spec=embedder.layer_spec_).fit_transform(embeddings).astype(np.float64)
    Z = (Z - Z.mean(0)) / Z.std(0)
    rng = np.random.default_rng(seed)
    take = np.resize(np.arange(len(Z)), n_rows)
    X_big = (Z[take] + 0.3 * rng.standard_normal((n_rows, Z.shape[1]))).astype(np.float32)
    Y_big = Y[take]
    keep = (Y_big.sum(0) > 0) & (Y_big.sum(0) < n_rows)
    Y_big = Y_big[:, keep]

    def batched():
        return one_vs_rest_logistic(X_big, Y_big, DEFAULT_CS)

    def sklearn():
        return [OneVsRestClassifier(LogisticRegression(C=C, max_iter=500)).fit(X_big, Y_big) for C in DEFAULT_CS]

    times = {"batched": [], "sklearn": []}
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            for _ in range(repeats):
                for name, run in (("batched", batched), ("sklearn", sklearn)):
                    start = time.perf_counter()
                    out = run()
                    times[name].append(time.perf_counter() - start)
                    if name == "batched":
                        fits = out
                    else:
                        references = out
    finally:
        torch.set_num_threads(threads)
    differences = []
    for fit, reference in zip(fits, references):
        coef = np.stack([e.coef_[0] for e in reference.estimators_], axis=1)
        differences.append(float(np.abs(fit[0] - coef).max()))
    median = {name: float(np.median(values)) for name, values in times.items()}
    return {"task": task_name, "layer": layer, "rows": n_rows, "classes": int(Y_big.shape[1]), "Cs": list(DEFAULT_CS),
            "repeats": repeats, "seconds": times, "median_s": median, "ratio": median["sklearn"] / median["batched"],
            "largest_coefficient_difference": max(differences), "threads": 1}


def scale_lines(scale: dict) -> list[str]:
    return [f"## One training split at {scale['rows']:,} records (timing only)", "",
            f"Task `{scale['task']}` ({scale['classes']} classes), layer {scale['layer']}, the four Cs: the real "
            f"training split's embeddings tiled to {scale['rows']:,} rows with noise, so no AUC is reported. "
            f"One thread each, the two solvers interleaved {scale['repeats']} times.", "",
            "| solver | median seconds |", "|---|---:|",
            f"| batched (the `logistic` probe) | {scale['median_s']['batched']:.1f} |",
            f"| scikit-learn, class by class | {scale['median_s']['sklearn']:.1f} |", "",
            f"Ratio: **{scale['ratio']:.1f}x**. Largest difference between the two solvers' coefficients: "
            f"{scale['largest_coefficient_difference']:.1e}."]


if __name__ == "__main__":
    raise SystemExit(main())
