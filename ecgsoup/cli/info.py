"""``ecgsoup info``: the model, the encoder configurations, versions and hardware."""

from __future__ import annotations

import json
import os

from ecgsoup.cli.common import EXIT_OK, CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="model, configurations, versions and hardware")
    p.add_argument("--model", default=None, help="describe this model (default: the bundled one)")
    p.add_argument("--configs", action="store_true", help="list the named encoder configurations")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _model_info(spec, explicit: bool) -> dict:
    import dataclasses

    from ecgsoup.backbones import load_backbone
    from ecgsoup.backbones.stmem import WeightsError, model_fingerprint

    name = {"random": "random:ecgsoup-100hz-tiny"}.get(spec, spec)
    try:
        encoder = load_backbone(name)
    except (WeightsError, ValueError, OSError) as error:
        if explicit:
            raise CLIError(f"--model {spec}: {error}") from None
        return {"source": spec, "available": False, "problem": str(error)}
    metadata = dict(getattr(encoder, "metadata", {}))
    card = encoder.card
    return {
        "source": spec,
        "available": True,
        "name": card.name if card else type(encoder).__name__,
        "family": encoder.family,
        "sha256": model_fingerprint(encoder),
        "pretrained": bool(metadata.get("pretrained", True)),
        "parameters": int(sum(p.numel() for p in encoder.parameters())),
        "license": card.license if card else "unstated",
        "notice": card.notice if card else "",
        "contract": encoder.contract.to_dict(),
        "contract_text": encoder.contract.describe(),
        "layers": [[layer.name, layer.width, layer.stream] for layer in encoder.layers],
        "config": dataclasses.asdict(encoder.config),
        "metadata": {k: v for k, v in metadata.items() if k != "sha256"},
    }


def _versions() -> dict:
    import platform
    from importlib import metadata

    from ecgsoup._version import __version__

    versions = {"ecgsoup": __version__, "python": platform.python_version()}
    for package in ("torch", "scikit-learn", "numpy", "scipy", "pandas", "wfdb", "zarr", "dask", "distributed"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _hardware() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_available": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }


def _configs() -> dict:
    from ecgsoup.backbones.stmem import get_config, list_configs

    out = {}
    for name in list_configs():
        c = get_config(name)
        out[name] = {
            "sampling_rate": c.sampling_rate, "n_samples": c.n_samples, "patch_size": c.patch_size,
            "width": c.width, "depth": c.depth, "heads": c.heads, "bandpass": c.bandpass,
            "lead_names": list(c.lead_names),
        }  # fmt: skip
    return out


def run(args) -> int:
    if args.configs:
        info = {"configs": _configs()}
    else:
        info = {
            "model": _model_info(args.model or "default", explicit=args.model is not None),
            "versions": _versions(),
            "hardware": _hardware(),
            "configs": sorted(_configs()),
        }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return EXIT_OK
    if args.configs:
        print(f"{'configuration':<22} {'Hz':>5} {'samples':>7} {'patch':>5} {'width':>5} {'depth':>5}  band-pass")
        for name, c in info["configs"].items():
            band = "-" if c["bandpass"] is None else f"{c['bandpass'][0]:g}-{c['bandpass'][1]:g} Hz"
            print(f"{name:<22} {c['sampling_rate']:>5g} {c['n_samples']:>7} {c['patch_size']:>5} "
                  f"{c['width']:>5} {c['depth']:>5}  {band}")  # fmt: skip
        return EXIT_OK
    model = info["model"]
    print(f"model: {model['source']}")
    if model["available"]:
        layers = model["layers"]
        widths = sorted({w for _, w, _ in layers})
        print(f"  name: {model['name']}  (family {model['family']}; pretrained: "
              f"{'yes' if model['pretrained'] else 'NO, random weights'})")  # fmt: skip
        print(f"  sha256: {model['sha256']}")
        print(f"  licence: {model['license']}" + (f"  ({model['notice']})" if model["notice"] else ""))
        print(f"  parameters: {model['parameters']:,}  layers {len(layers)} ({layers[0][0]} .. {layers[-1][0]}), "
              f"width {'-'.join(map(str, (widths[0], widths[-1]))) if len(widths) > 1 else widths[0]}")  # fmt: skip
        print(f"  input: {model['contract_text']}")
        for key, value in model["metadata"].items():
            print(f"  {key}: {value if not isinstance(value, (dict, list)) else json.dumps(value, default=str)}")
    else:
        print(f"  not available: {model['problem']}")
    print("versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in info["versions"].items()))
    hw = info["hardware"]
    cuda = f"yes ({', '.join(hw['cuda_devices'])})" if hw["cuda_available"] else "no"
    print(f"hardware: {hw['cpu_count']} CPUs, torch threads {hw['torch_threads']}, CUDA {cuda}, "
          f"MPS {'yes' if hw['mps_available'] else 'no'}")  # fmt: skip
    print("configurations: " + ", ".join(info["configs"]) + "  (details: ecgsoup info --configs)")
    return EXIT_OK
