"""``ecgsoup pretrain``: masked-reconstruction pretraining of an encoder (ST-MEM or IPA)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ecgsoup.cli.common import EXIT_OK, CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain an encoder with masked reconstruction (ST-MEM or IPA)")
    p.add_argument("--data", nargs="+", required=True, help="npz shards, WFDB folders or a PTB-XL root")
    p.add_argument("--val", nargs="+", help="validation data (default: a seeded --val-fraction of --data)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--config", default="ecgsoup-100hz-tiny", help="encoder configuration (see `ecgsoup info --configs`)")
    p.add_argument("--objective", choices=["st-mem", "ipa"], default="st-mem")
    p.add_argument("--out", required=True, help="run directory: checkpoint.pt, best/, log.csv")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--warmup-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-lr", type=float, default=1.2e-3, help="per 256 samples")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=["auto", "bfloat16", "float32"], default="auto",
                   help="bf16 autocast or plain float32; 'auto' takes bf16 where the device has bf16 "
                   "instructions (recent GPUs, x86 CPUs with AVX-512 BF16 or AMX) and float32 elsewhere, "
                   "where bf16 is emulated and many times slower; may change on --resume")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop early (resume later)")
    p.add_argument("--keep-epochs", type=int, nargs="*", default=[],
                   help="also save the encoder after these epochs, to OUT/epoch-NNN/ (a scaling curve)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--export", help="also write the best encoder here as fp16 (e.g. a bundled model)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ecgsoup.backbones.stmem import get_config, load_model, save_model
    from ecgsoup.pretraining import PretrainSettings, load_pretraining_arrays, pretrain

    try:
        config = get_config(args.config)
    except (KeyError, ValueError) as error:
        raise CLIError(str(error)) from None
    settings = PretrainSettings(
        config=args.config, objective=args.objective, epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size, base_lr=args.base_lr, weight_decay=args.weight_decay,
        precision=args.precision, device=args.device, seed=args.seed, checkpoint_every=args.checkpoint_every,
        num_threads=args.threads, keep_epochs=tuple(args.keep_epochs),
    )  # fmt: skip
    try:
        train = load_pretraining_arrays(args.data, config)
        if args.val:
            val = load_pretraining_arrays(args.val, config)
        else:
            order = np.random.default_rng(args.seed).permutation(len(train))
            n_val = max(1, int(round(args.val_fraction * len(train))))
            val, train = train[order[:n_val]], train[order[n_val:]]
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from None
    print(f"pretraining {args.config} ({args.objective}) on {len(train)} records, validating on {len(val)}")
    try:
        summary = pretrain(
            train, val, args.out, settings, resume=args.resume, max_steps=args.max_steps,
            progress=not args.quiet,
            metadata={"data": [str(p) for p in args.data], "n_train": len(train), "n_val": len(val),
                      "command": "ecgsoup " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["pretrain"] else None},
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error).splitlines()[0]) from None
    if args.export and summary["best_model"] is None:
        print("note: no epoch finished, so there is no best model to export yet", file=sys.stderr)
    elif args.export:
        best = load_model(Path(args.out) / "best")
        save_model(best, args.export, dtype="float16")
        summary["exported"] = args.export
    print(json.dumps(summary, indent=2))
    return EXIT_OK
