"""ecgsoup's model directory for every family: ``config.json`` + ``model.safetensors``.

``config.json`` holds ``format``, ``format_version``, ``family``, ``arch`` (the
family's architecture config), ``contract`` (the input contract, with its
recipe name and version), ``card`` (licence, source, citation, notice) and
``weights`` (file name and sha256, verified at every load).  Writing one with
:func:`save_backbone` (or ``ecgsoup convert``) turns an original third-party
file into a directory that ``model=<dir>`` loads without naming the family.
ST-MEM directories keep their older layout (``config`` instead of ``arch``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ecgsoup.backbones._base import Backbone, BackboneCard, FamilyEntry, InputContract
from ecgsoup.backbones._checkpoint import (
    WeightsError,
    build_checked,
    file_in_folder,
    load_strict,
    read_checkpoint,
    sha256_file,
)

__all__ = ["save_backbone", "load_directory", "read_directory_config"]

FORMAT = "ecgsoup-encoder"
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def contract_from_info(info: dict, config_path) -> InputContract:
    """The folder's input contract, or a WeightsError naming the config and the field."""
    try:
        return InputContract.from_dict(info["contract"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: contract: {str(exc).splitlines()[0]} Fix the config, or re-export the "
                           "model with `ecgsoup convert`.") from None  # fmt: skip


def read_directory_config(directory) -> dict:
    path = Path(directory) / CONFIG_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read {path} ({exc}).") from exc
    if info.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an ecgsoup model config (format={info.get('format')!r}).")
    missing = {"family", "weights"} - set(info)
    if missing:
        raise WeightsError(f"{path} lacks {sorted(missing)}; re-export it with `ecgsoup convert`.")
    return info


def save_backbone(module: Backbone, directory, *, metadata: dict | None = None) -> Path:
    """Write ``module`` as an ecgsoup model directory (safetensors weights, self-describing config).

    Parameters
    ----------
    module : Backbone
        A loaded backbone (its ``card`` and ``contract`` are written with it).
    directory : str or Path
        Created if missing.  An existing ``config.json`` or ``model.safetensors``
        there is never overwritten.
    metadata : dict, optional
        Extra JSON-serialisable facts.
    """
    from safetensors.torch import save_file

    if module.family == "stmem":
        from ecgsoup.backbones.stmem.weights import save_model

        return save_model(module, directory, metadata=metadata)
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if (directory / name).exists():
            raise FileExistsError(f"{directory / name} exists; choose an empty folder for the converted model.")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE))
    info = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": module.family,
        "arch": dataclasses.asdict(module.config),
        "contract": module.contract.to_dict(),
        "card": module.card.to_dict() if module.card else None,
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(directory / WEIGHTS_FILE)},
        "metadata": {**{k: v for k, v in module.metadata.items() if k not in ("sha256", "path")},
                     "original_sha256": module.metadata.get("sha256"), **(metadata or {})},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return directory


def load_directory(directory, entry: FamilyEntry) -> Backbone:
    """Load a directory written by :func:`save_backbone` (strict, hash verified)."""
    import importlib

    directory = Path(directory)
    info = read_directory_config(directory)
    config_path = directory / CONFIG_FILE
    weights = info["weights"]
    if not isinstance(weights, dict) or "sha256" not in weights:
        raise WeightsError(f"{config_path}: 'weights' must give the file and its sha256; re-export it with "
                           "`ecgsoup convert`.")  # fmt: skip
    weights_path = file_in_folder(directory, weights.get("file"), config_path)
    # The config is checked (every size bounded) before the weights are hashed or anything is built.
    module_name, _, attr = entry.config.partition(":")
    config_cls = getattr(importlib.import_module(module_name), attr)
    if not isinstance(info.get("arch"), dict):
        raise WeightsError(f"{config_path}: 'arch' must be the architecture's settings; re-export it with "
                           "`ecgsoup convert`.")  # fmt: skip
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in info["arch"].items()}
    try:
        config = config_cls(**arch)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{config_path}: arch: {str(exc).splitlines()[0]} Fix the config, or re-export the "
                           "model with `ecgsoup convert`.") from None  # fmt: skip
    actual = sha256_file(weights_path)
    if actual != weights["sha256"]:
        raise WeightsError(
            f"sha256 of {weights_path} is {actual[:12]}…, but its config.json records "
            f"{str(weights['sha256'])[:12]}…: the file is corrupt or belongs to another model."
        )
    module_name, _, attr = entry.module.partition(":")
    label = f"{entry.family} model"
    module = build_checked(getattr(importlib.import_module(module_name), attr), config, weights_path,
                           weights_path, label)  # fmt: skip
    load_strict(module, read_checkpoint(weights_path), weights_path, name=label)
    module.contract = contract_from_info(info, config_path)
    module.card = BackboneCard.from_dict(info["card"]) if info.get("card") else entry.card
    module.metadata = {**info.get("metadata", {}), "sha256": actual, "path": str(directory)}
    return module.eval()
