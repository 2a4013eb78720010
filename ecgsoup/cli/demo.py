"""``ecgsoup demo``: the layer-wise probe and PPA/PMA on the bundled LUDB sample."""

from __future__ import annotations

from ecgsoup.cli.common import EXIT_OK, CLIError, locked_output, output_folder

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    from ecgsoup.tasks import LUDB_TASKS

    p = sub.add_parser("demo", help="layer-wise probe + PPA/PMA on the bundled real LUDB sample")
    p.add_argument("--out", default="demo-output", help="folder for tables and plots")
    p.add_argument("--model", default="default", help="'default', a model directory or an ST-MEM .pth")
    p.add_argument("--tasks", nargs="+", default=list(LUDB_TASKS), choices=list(LUDB_TASKS))
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from ecgsoup.backbones.stmem import WeightsError
    from ecgsoup.demo import run_demo

    out = output_folder("--out", args.out)
    try:
        with locked_output("--out", out, "demo"):
            run_demo(out, model=args.model, tasks=args.tasks, cv=args.cv, random_state=args.seed)
    except WeightsError as error:
        raise CLIError(str(error)) from None
    return EXIT_OK
