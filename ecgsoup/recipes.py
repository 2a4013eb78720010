"""Named, versioned preprocessing recipes: the record-level and window-level steps of a contract.

A backbone's :class:`~ecgsoup.backbones.InputContract` names its record-level
recipe (applied by :class:`~ecgsoup.ECGPreprocessor`: filters, resampling,
record-wide scaling) and its per-window normalisation (applied by
:class:`~ecgsoup.LayerwiseEmbedder` to every model window).  Recipes carry a
version (``"resample@1"``) so that a cached embedding is never reused across
a change in what a recipe does.

Record-level recipes take a time-major ``(n_records, n_samples, n_leads)``
array already in the model's lead order, its sampling rate and the contract,
and return a time-major array at the contract's sampling rate.
"""

from __future__ import annotations

import importlib

import numpy as np

from ecgsoup.signal import ZSCORE_EPS, resample, zscore
from ecgsoup.signal import bandpass as _bandpass

__all__ = ["apply_window_norm", "window_transform", "record_recipe", "resample_recipe"]


def resample_recipe(x: np.ndarray, fs: float, contract, bandpass=None) -> np.ndarray:
    """``resample@1``: polyphase resampling to the contract's rate, then an optional band-pass.

    ``bandpass`` overrides the contract's band-pass (``None`` keeps the
    contract's, ``False`` applies none).
    """
    x = resample(x, float(fs), contract.sampling_rate, axis=1)
    band = contract.bandpass if bandpass is None else (bandpass or None)
    if band is not None:
        x = _bandpass(x, contract.sampling_rate, *band, axis=1)
    return x


_BUILTIN = {"resample@1": resample_recipe}


def record_recipe(name: str):
    """The record-level function of a recipe name (built in, or declared by a backbone family)."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    from ecgsoup.backbones._registry import families

    for entry in families().values():
        if name in entry.recipes:
            module, _, attr = entry.recipes[name].partition(":")
            return getattr(importlib.import_module(module), attr)
    known = sorted({*_BUILTIN, *(n for e in families().values() for n in e.recipes)})
    raise ValueError(f"Unknown preprocessing recipe {name!r}; known: {', '.join(known)}.")


def _minmax(x: np.ndarray, axis) -> np.ndarray:
    low = x.min(axis=axis, keepdims=True)
    high = x.max(axis=axis, keepdims=True)
    return (2.0 * (x - low) / (high - low + ZSCORE_EPS) - 1.0).astype(np.float32)


def apply_window_norm(batch: np.ndarray, kind: str) -> np.ndarray:
    """Normalise a batch of windows ``(B, leads, T)`` as a contract says; float32 out.

    ``zscore_per_lead``: each lead over time (ddof 0, ``+1e-8``);
    ``zscore_whole``: one mean and standard deviation over all leads and
    samples of the window; ``minmax_per_lead``: each lead to [-1, 1];
    ``minmax_whole``: the window to [-1, 1]; ``none``: unchanged.
    """
    if kind == "zscore_per_lead":
        return zscore(batch, axis=-1)
    if kind == "zscore_whole":
        x = np.asarray(batch, dtype=np.float32)
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        return ((x - mean) / (std + ZSCORE_EPS)).astype(np.float32)
    if kind == "minmax_per_lead":
        return _minmax(np.asarray(batch, dtype=np.float32), -1)
    if kind == "minmax_whole":
        return _minmax(np.asarray(batch, dtype=np.float32), (1, 2))
    if kind == "none":
        return np.asarray(batch, dtype=np.float32)
    raise ValueError(f"Unknown window normalisation {kind!r}.")


def window_transform(spec: str | None):
    """The function named by a contract's ``window_transform`` (``"module:attr"``), or None."""
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    if not module.startswith("ecgsoup."):
        raise ValueError(f"window_transform={spec!r}: only ecgsoup's own functions are allowed.")
    return getattr(importlib.import_module(module), attr)
