"""``list_backbones()``: every registered model, what it emits and whether its weights are here."""

from __future__ import annotations

import importlib

from ecgsoup.backbones._registry import DEFAULT_NAME, families, model_home, registered_names

__all__ = ["list_backbones"]


def _widths_text(widths) -> str:
    widths = list(widths)
    if len(set(widths)) == 1:
        return f"{len(widths)} x {widths[0]}"
    return ", ".join(map(str, widths))


def _layers_of(entry, size: str):
    """Layer table of a size, built on torch's meta device (no memory, no weights)."""
    import torch

    module_name, _, attr = entry.config.partition(":")
    config_cls = getattr(importlib.import_module(module_name), attr)
    if entry.family == "stmem":
        from ecgsoup.backbones.stmem.config import get_config

        config = get_config(entry.sizes[size]["config"] if size in entry.sizes else f"st-mem-250hz-{size}")
    else:
        config = config_cls(**entry.sizes[size])
    module_name, _, attr = entry.module.partition(":")
    with torch.device("meta"):
        module = getattr(importlib.import_module(module_name), attr)(config)
    return module.layers


def list_backbones():
    """A table of the registered backbones.

    Returns
    -------
    table : pandas.DataFrame
        One row per registered model: ``name``, ``family``, ``layers`` (how many
        layers it emits), ``widths``, ``contract`` (rate, window, leads,
        recipe), ``license``, ``download`` (where to get the weights),
        ``present`` (whether the weights are in :envvar:`ECGSOUP_MODEL_HOME`,
        or bundled) and ``model`` (what to pass as ``model=``).
    """
    import pandas as pd

    from ecgsoup.backbones.stmem.weights import default_model_path

    rows = []
    entries = families()
    default = default_model_path()
    rows.append(dict(
        name=DEFAULT_NAME, family="stmem", layers=13, widths="13 x 192",
        contract=entries["stmem"].contracts["ecgsoup-100hz"].describe(), license="CC-BY-4.0",
        download="bundled with ecgsoup", present=(default / "config.json").exists(), model="default",
    ))
    for name, (family, size, filename, url) in registered_names().items():
        entry = entries[family]
        layers = _layers_of(entry, size)
        home = model_home() / name
        rows.append(dict(
            name=name, family=family, layers=len(layers), widths=_widths_text(layer.width for layer in layers),
            contract=entry.contracts[entry.default_contract].describe(), license=entry.card.license,
            download=f"{filename} from {url}", present=home.exists() and any(home.iterdir()),
            model=name,
        ))
    return pd.DataFrame(rows)
