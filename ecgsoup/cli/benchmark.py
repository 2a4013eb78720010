"""``ecgsoup benchmark ptbxl``: PTB-XL's six tasks for one model, or the per-layer atlas of several."""

from __future__ import annotations

import argparse

from ecgsoup.cli.common import EXIT_OK, CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    from ecgsoup.tasks import PTBXL_TASKS

    p = sub.add_parser("benchmark", help="standard benchmarks: PTB-XL's six tasks, every layer, fusions, baselines")
    kinds = p.add_subparsers(dest="benchmark", required=True)
    q = kinds.add_parser(
        "ptbxl",
        help="the PTB-XL benchmark (folds 1-8 train, 9 validation, 10 test)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Probe every layer, PPA, PMA, the same architecture with random weights, clinical "
            "features and a hybrid on PTB-XL's six tasks (all, diag, sub, super, form, rhythm). "
            "Folds 1-8 train; when fold 10 has labels it is scored and choices are made on fold 9; "
            "when it has none (the z-scored subset), fold 9 is scored and choices are made by "
            "cross-validation inside folds 1-8. Macro ROC AUC with bootstrap 95% intervals."
        ),
    )
    q.add_argument("root", help="a PTB-XL download (records100/ or records500/, ptbxl_database.csv, "
                               "scp_statements.csv) or a folder of npz shards with labels.csv")  # fmt: skip
    q.add_argument("--model", action="append", default=None,
                   help="'default', a model folder, <family>:<checkpoint> or random:<name>; give --model several "
                        "times for the per-layer atlas: every model through the same protocol, one combined table "
                        "and figure (atlas.{json,md,csv,png}), resumable")  # fmt: skip
    q.add_argument("--out", default="ptbxl-benchmark", help="folder for ptbxl.{json,md,csv}, figures and the cache")
    q.add_argument("--pma", choices=["on", "off"], default=None,
                   help="PMA rows (a gate trained per split, the slowest fusion); default on for one model, "
                        "off for the atlas")  # fmt: skip
    q.add_argument("--rate", type=int, choices=[100, 500], default=100, help="which copy of a download to read")
    q.add_argument("--scp-statements", default=None, help="statement table (default: ROOT/scp_statements.csv)")
    q.add_argument("--tasks", nargs="+", choices=list(PTBXL_TASKS), default=list(PTBXL_TASKS))
    q.add_argument("--probes", nargs="+", choices=["logistic", "mlp"], default=["logistic", "mlp"])
    q.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    q.add_argument("--max-records", type=int, default=None, help="a random subset, for a quick check")
    q.add_argument("--no-features", action="store_true", help="leave out the clinical-features and hybrid rows")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    q.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="auto: bfloat16 where the processor computes it natively, else float32")
    q.add_argument("--device", default="cpu")
    q.add_argument("--n-jobs", type=int, default=None, help="processes for the clinical features, probes and bootstrap")
    q.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler to spread embedding and probes over")
    q.add_argument("--workers", type=int, metavar="N", help="start a local Dask cluster of N processes")
    q.set_defaults(func=run)


def run(args) -> int:
    from ecgsoup.backbones.stmem import WeightsError
    from ecgsoup.benchmark import ptbxl

    if args.bootstrap < 100:
        raise CLIError(f"--bootstrap {args.bootstrap} is too few for a 95% interval; use at least 100.")
    models = args.model or ["default"]
    if len(models) > 1:
        return _run_atlas(args, models)
    from ecgsoup.distributed import connect

    try:
        with connect(scheduler=args.scheduler, workers=args.workers) as client:
            result = ptbxl(
                args.root, model=models[0], rate=args.rate, tasks=args.tasks, probes=args.probes,
                n_bootstrap=args.bootstrap, max_records=args.max_records, out=args.out,
                scp_statements=args.scp_statements, features=not args.no_features, random_state=args.seed,
                batch_size=args.batch_size, precision=args.precision, device=args.device, n_jobs=args.n_jobs,
                pma=args.pma != "off", client=client,
            )  # fmt: skip
    except (WeightsError, FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    print(result.summary())
    print(f"\nwrote {args.out}/ptbxl.json, ptbxl.md, ptbxl.csv and {len(result.figures)} figures")
    return EXIT_OK


def _run_atlas(args, models) -> int:
    from ecgsoup.atlas import atlas
    from ecgsoup.backbones.stmem import WeightsError

    try:
        result = atlas(
            args.root, models, out=args.out, tasks=args.tasks, probes=args.probes, n_bootstrap=args.bootstrap,
            max_records=args.max_records, rate=args.rate, scp_statements=args.scp_statements,
            features=not args.no_features, pma=args.pma == "on", random_state=args.seed,
            batch_size=args.batch_size, precision=args.precision, device=args.device, n_jobs=args.n_jobs,
        )  # fmt: skip
    except (WeightsError, FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    print(result.summary())
    print(f"\nwrote {args.out}/atlas.json, atlas.md, atlas.csv, atlas_layers.csv, atlas.png and each model's run "
          f"in {args.out}/models/")  # fmt: skip
    return EXIT_OK
