"""Pack a pretraining run into the repository compactly, or unpack it to resume.

A run folder written by ``ecgsoup pretrain`` holds ``checkpoint.pt`` (model and AdamW
state in float32, about 70 MB for the tiny model), ``best/`` and ``epoch-NNN/`` encoders,
``log.csv`` and ``settings.json``.  What must survive a session, in about 45 MB:

* ``checkpoint.pt`` with the model in float32 (resuming continues from exactly these
  weights) and the optimiser moments in bfloat16 (``compact_checkpoint``; they only
  steer the next steps, and three significant digits do that);
* the kept encoders (``best``, ``epoch-NNN``; ``--encoders`` picks some, e.g. the ones not
  yet probed or the current candidate) as float16 safetensors, 11 MB each for the tiny model.
  ``best/`` need not travel: a resumed run writes it again at its next validation improvement;
* ``log.csv``, ``settings.json``, and the command line in ``COMMAND``.

Usage::

    python scripts/pack_run.py pack runs/tiny-ipa-400 benchmarks/runs/tiny-ipa-400 --command "ecgsoup pretrain ..."
    python scripts/pack_run.py unpack benchmarks/runs/tiny-ipa-400 runs/tiny-ipa-400
    ecgsoup pretrain ... --out runs/tiny-ipa-400 --resume     # the same command, plus --resume
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from ecgsoup.backbones.stmem import load_model, save_model
from ecgsoup.pretraining import compact_checkpoint


def pack(run: Path, dest: Path, command: str | None, encoders: list[str] | None = None) -> None:
    if not (run / "checkpoint.pt").exists():
        sys.exit(f"{run} has no checkpoint.pt; is it a run folder of `ecgsoup pretrain`?")
    run_abs, dest_abs = run.resolve(), dest.resolve()
    if run_abs == dest_abs or run_abs in dest_abs.parents or dest_abs in run_abs.parents:
        sys.exit(f"pack into a folder outside the run: {dest} and {run} overlap.")
    if dest.exists() and any(dest.iterdir()) and not (dest / "checkpoint.pt").exists():
        sys.exit(f"{dest} is not empty and is not a previous pack (no checkpoint.pt); choose a new folder.")
    kept = sorted(p for p in run.iterdir() if p.is_dir() and (p / "config.json").exists())
    if encoders is not None:
        missing = sorted(set(encoders) - {p.name for p in kept})
        if missing:
            sys.exit(f"{run} has no encoder {', '.join(missing)}; it has {', '.join(p.name for p in kept)}.")
        kept = [p for p in kept if p.name in encoders]
    dest.mkdir(parents=True, exist_ok=True)
    compact_checkpoint(run / "checkpoint.pt", dest / "checkpoint.pt")
    for name in ("log.csv", "settings.json"):
        if (run / name).exists():
            shutil.copy2(run / name, dest / name)
    for old in dest.iterdir():  # a previous pack's encoders that are not packed again
        if (old.is_dir() and re.fullmatch(r"best|epoch-\d+", old.name) and (old / "config.json").exists()
                and old.name not in {p.name for p in kept}):
            shutil.rmtree(old)
    for model_dir in kept:
        encoder = load_model(model_dir)
        meta = {k: v for k, v in encoder.metadata.items() if k not in ("sha256", "path")}
        save_model(encoder, dest / model_dir.name, dtype="float16", metadata=meta)
    if command:
        (dest / "COMMAND").write_text(command.strip() + "\n")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    print(f"packed {run} -> {dest} ({size:.1f} MB)")


def unpack(packed: Path, run: Path) -> None:
    if (run / "checkpoint.pt").exists():
        sys.exit(f"{run} already holds a checkpoint.pt; unpack into an empty folder.")
    run.mkdir(parents=True, exist_ok=True)
    for item in packed.iterdir():
        target = run / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    print(f"unpacked {packed} -> {run}; resume with the command in {run / 'COMMAND'} plus --resume")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack")
    p.add_argument("run", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--command", default=None, help="the `ecgsoup pretrain` command of the run")
    p.add_argument("--encoders", nargs="+", default=None,
                   help="kept encoders to pack (default: all); best/ is rewritten on resume at the next improvement")
    u = sub.add_parser("unpack")
    u.add_argument("packed", type=Path)
    u.add_argument("run", type=Path)
    args = parser.parse_args()
    if args.action == "pack":
        pack(args.run, args.dest, args.command, args.encoders)
    else:
        unpack(args.packed, args.run)


if __name__ == "__main__":
    main()
