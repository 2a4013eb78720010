"""Record-level preprocessing of the ECG-FM family: linear resampling and a per-lead z-score.

The authors' pipeline (fairseq-signals' ECG preprocessing, and the quick-start's
transforms) prepares each whole record before cutting it into non-overlapping
5 s segments:

1. resampling to 500 Hz by **linear interpolation**, the record's ``n``
   samples being spread evenly over the ``int(n * 500 / fs)`` output
   positions (first and last samples kept);
2. per lead, subtracting the mean and dividing by the standard deviation
   (ddof 0) over the **whole record**; a constant lead becomes zeros.

The segments themselves are not normalised again (``window_norm="none"``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ecg_fm_recipe", "linear_resample", "record_zscore"]


def linear_resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    """Linear-interpolation resampling along axis 1 of ``(records, time, leads)``, as the authors do."""
    x = np.asarray(x, dtype=np.float64)
    if float(fs) == float(target):
        return x
    n_in = x.shape[1]
    n_out = int(n_in * (float(target) / float(fs)))
    if n_out < 2 or n_in < 2:
        raise ValueError(f"{n_in} samples at {fs:g} Hz are too few to resample to {target:g} Hz.")
    # Input sample i sits at output position i * (n_out - 1) / (n_in - 1).
    position = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    left = np.minimum(np.floor(position).astype(np.int64), n_in - 2)
    weight = (position - left)[None, :, None]
    return x[:, left] * (1.0 - weight) + x[:, left + 1] * weight


def record_zscore(x: np.ndarray) -> np.ndarray:
    """Per-lead z-score over the whole record (axis 1, ddof 0); constant leads become zeros."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    constant = std == 0
    out = centred / np.where(constant, 1.0, std)
    return np.where(constant, 0.0, out)


def ecg_fm_recipe(x: np.ndarray, fs: float, contract) -> np.ndarray:
    """``ecg-fm@1``: linear resampling to the contract's rate, then a per-lead z-score over the record.

    Parameters
    ----------
    x : ndarray of shape (n_records, n_samples, n_leads)
        Time-major records in the contract's lead order.
    fs : float
        Their sampling rate in Hz.
    contract : InputContract
        The ECG-FM contract (its ``sampling_rate`` is the target).

    Returns
    -------
    ndarray of shape (n_records, n_out, n_leads), float32
    """
    return record_zscore(linear_resample(x, fs, contract.sampling_rate)).astype(np.float32)
