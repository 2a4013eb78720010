"""``ecgsoup convert``: an original checkpoint as an ecgsoup model folder (safetensors)."""

from __future__ import annotations

from pathlib import Path

from ecgsoup.cli.common import EXIT_OK, CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="turn an original checkpoint into an ecgsoup model folder (safetensors)")
    p.add_argument("family", help="the backbone family: see `ecgsoup models`")
    p.add_argument("source", help="the original weights file or folder")
    p.add_argument("--out", required=True, help="new folder for config.json + model.safetensors")
    p.set_defaults(func=run)


def run(args) -> int:
    from ecgsoup.backbones import families, load_backbone, save_backbone

    if args.family not in families():
        raise CLIError(f"unknown family {args.family!r}; known: {', '.join(families())} (see `ecgsoup models`).")
    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise CLIError(f"{out} is not empty; choose a new folder for the converted model.")
    module = load_backbone(f"{args.family}:{args.source}")
    save_backbone(module, out, metadata={"converted_from": Path(args.source).name})
    print(f"wrote {out} ({module.family}, {len(module.layers)} layers, sha256 of the original "
          f"{module.metadata['sha256'][:12]}); use it with --model {out}")  # fmt: skip
    return EXIT_OK
