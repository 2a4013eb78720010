"""Window-level preprocessing of the MERL family.

MERL's authors scale each 10 s record as a whole, all leads together, to
[0, 1] before it reaches the encoder, with ``1e-8`` added to the range
(their downstream data-set class).  :func:`minmax_unit` is that step, applied
by the embedder to each model window (for a 10 s record at 500 Hz the window
is the record).  It differs from the ``minmax_whole`` window normalisation,
which maps to [-1, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["MINMAX_EPS", "minmax_unit"]

MINMAX_EPS = 1e-8


def minmax_unit(batch: np.ndarray) -> np.ndarray:
    """Scale each window, all leads jointly, to [0, 1]: ``(x - min) / (max - min + 1e-8)``.

    Parameters
    ----------
    batch : ndarray of shape (n_windows, n_leads, n_samples)
        Windows in the model's lead order.

    Returns
    -------
    ndarray of the same shape, float32
        Computed in float64 (the authors scale float64 WFDB signals) and
        cast to float32, as they do before the forward pass.
    """
    x = np.asarray(batch, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"Expected windows (n_windows, n_leads, n_samples), got shape {x.shape}.")
    low = x.min(axis=(1, 2), keepdims=True)
    high = x.max(axis=(1, 2), keepdims=True)
    return ((x - low) / (high - low + MINMAX_EPS)).astype(np.float32)
