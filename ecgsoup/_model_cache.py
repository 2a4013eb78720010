"""Loaded backbones, shared within the process, and their bfloat16 copies.

``GridSearchCV`` clones :class:`~ecgsoup.LayerwiseEmbedder` for every
candidate and fold; reloading (and re-hashing) the weights each time would cost
more than the cached embeddings save.  :func:`resolve_model` therefore keeps
the last few loaded backbones, keyed on the ``model=`` value, the device and,
for files, their size and modification time (so a rewritten file is reloaded).
The bfloat16 copies live in the same bounded cache, keyed on the weights'
fingerprint, so it holds at most 4 models in both precisions.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

from ecgsoup._data_shaped import RANDOM_MODEL, RANDOM_SEED, data_shaped_config
from ecgsoup.backbones import Backbone, load_backbone, parse_model
from ecgsoup.backbones.stmem import model_fingerprint, random_model

__all__ = ["bfloat16_copy", "config_dict", "resolve_model"]

_MODEL_CACHE: OrderedDict = OrderedDict()
_MODEL_CACHE_SIZE = 8
_MODEL_LOCK = threading.Lock()


def resolve_model(model, device: torch.device, shape) -> tuple[Backbone, str]:
    """The backbone for the ``model`` parameter on ``device``, and its fingerprint.

    ``shape`` is the shape of the input; only the data-shaped ``"random"``
    model reads it.
    """
    if isinstance(model, Backbone):
        encoder = model
        if encoder.training or _device_of(encoder) != device:
            encoder = copy.deepcopy(encoder)  # never modify the user's parameter
            encoder = encoder.to(device).eval()
        # Hash the tensors themselves: metadata may predate in-place edits.
        return encoder, model_fingerprint(encoder, from_tensors=True)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a path, '<family>:<path>' or a Backbone module, got {type(model).__name__}."
        )
    name = os.fspath(model)
    if name == RANDOM_MODEL:
        config = data_shaped_config(shape)
        key = ("random", repr(sorted(config.to_dict().items())), RANDOM_SEED, str(device))

        def load():
            encoder = random_model(config, seed=RANDOM_SEED)
            return encoder.to(device), model_fingerprint(encoder)

        return _cached_model(key, load)
    ref = parse_model(name)  # raises a clear error for anything unknown
    if ref.kind == "random":
        key = ("random", name, RANDOM_SEED, str(device))

        def load():
            try:
                encoder = load_backbone(name)
            except ValueError as exc:
                raise ValueError(f"model={name!r}: {exc}") from None
            return encoder.to(device), model_fingerprint(encoder)

        return _cached_model(key, load)
    path = ref.path
    key = ("path", name, str(path.resolve()), files_signature(path), str(device))

    def load():
        encoder = load_backbone(name)  # raises WeightsError
        return encoder.to(device).eval(), model_fingerprint(encoder)

    return _cached_model(key, load)


def _cached_model(key, load) -> tuple[Backbone, str]:
    with _MODEL_LOCK:
        if key in _MODEL_CACHE:
            _MODEL_CACHE.move_to_end(key)
            return _MODEL_CACHE[key]
    value = load()
    with _MODEL_LOCK:
        _MODEL_CACHE[key] = value
        while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
            _MODEL_CACHE.popitem(last=False)
    return value


def bfloat16_copy(encoder: Backbone, fingerprint: str) -> Backbone:
    """A bfloat16 copy of ``encoder`` (cached per weights and device; ``encoder`` untouched).

    Cheaper than autocast, which casts every weight again on every call.
    Keyed on the fingerprint of the weights (recomputed at every ``fit`` for
    encoder objects), so an encoder edited in place and refitted gets a new copy.
    """
    device = _device_of(encoder)
    config = repr(sorted(config_dict(encoder.config).items()))
    key = ("bfloat16", fingerprint, config, str(device))

    def load():
        copied = copy.deepcopy(encoder).to(torch.bfloat16).eval()
        if _mixed_layer_norm_works(device):
            # bf16 input with float32 weight and bias: torch normalises in
            # float32 internally and skips the rounding of the LayerNorm
            # parameters, at no cost in speed.
            for module in copied.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.float()
        return copied, fingerprint

    return _cached_model(key, load)[0]


def config_dict(config) -> dict:
    """A backbone configuration as a plain dict (its ``to_dict`` or its dataclass fields)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dataclasses.asdict(config)


_MIXED_LAYER_NORM: dict = {}


def _mixed_layer_norm_works(device: torch.device) -> bool:
    """Whether ``layer_norm`` takes bfloat16 input with float32 weights on ``device``."""
    if device.type not in _MIXED_LAYER_NORM:
        x = torch.ones(2, 4, dtype=torch.bfloat16, device=device)
        weight = torch.ones(4, device=device)
        try:
            ok = F.layer_norm(x, (4,), weight, torch.zeros_like(weight)).dtype == torch.bfloat16
        except RuntimeError:
            ok = False
        _MIXED_LAYER_NORM[device.type] = ok
    return _MIXED_LAYER_NORM[device.type]


def files_signature(path: Path) -> tuple:
    """(name, size, mtime) of the files a load would read; empty if missing."""
    if not path.exists():
        return ()
    if path.is_file() and path.suffix not in (".pth", ".pt", ".ckpt"):
        path = path.parent
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _device_of(encoder: Backbone) -> torch.device:
    return next(encoder.parameters()).device
