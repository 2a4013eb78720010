"""Model resolution: which embedder a store is written with, named the same way in every process."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["normalise_model", "files_signature"]

# "random" is shorthand for the tiny untrained configuration (seed 0).
RANDOM_ALIAS = {"random": "random:ecgsoup-100hz-tiny"}


def normalise_model(model):
    """A model argument every process resolves the same way (absolute paths, random alias)."""
    from ecgsoup.backbones import Backbone
    from ecgsoup.backbones._registry import families

    if isinstance(model, Backbone):
        return model
    name = os.fspath(model)
    name = RANDOM_ALIAS.get(name, name)
    if name == "default" or name.startswith("random:"):
        return name
    family, sep, rest = name.partition(":")
    if sep and family in families():
        path = Path(rest).expanduser()
        return f"{family}:{path.resolve()}" if path.exists() else name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def files_signature(model: str) -> tuple:
    """(name, size, mtime) of a model path's files, so rewritten weights are reloaded."""
    from ecgsoup._model_cache import files_signature as path_signature

    family, sep, rest = model.partition(":")
    return path_signature(Path(rest if sep and len(family) > 1 else model).expanduser())
