"""Record-level preprocessing of the ECG-JEPA family: the authors' FFT resampling.

The authors bring every PTB-XL record (10 s at 500 Hz) to 2,500 samples with
``scipy.signal.resample``, an FFT (periodic, ideal low-pass) resampler, and
apply no filter and no scaling (``ecg_data.waves_ptbxl``).  ``fft_recipe``
does the same at any input rate: the record is resampled by FFT to the
contract's 250 Hz.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as sps

from ecgsoup.signal import MAX_RECORD_VALUES, resampled_length

__all__ = ["fft_recipe"]


def fft_recipe(x: np.ndarray, fs: float, contract) -> np.ndarray:
    """``ecg-jepa-fft@1``: FFT resampling of each whole record to the contract's rate.

    Parameters
    ----------
    x : ndarray of shape (n_records, n_samples, n_leads)
        Time-major ECGs in the contract's lead order.
    fs : float
        Sampling rate of ``x`` in Hz.
    contract : InputContract
        The target contract; only ``sampling_rate`` is used.

    Returns
    -------
    ndarray of shape (n_records, n_samples_out, n_leads), float32
        ``scipy.signal.resample`` of every record to ``n_samples_out`` samples
        (the length polyphase resampling would give, so the preprocessor's
        window arithmetic is unchanged: 2,500 for 10 s).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"Expected time-major records (n_records, n_samples, n_leads), got shape {x.shape}.")
    if fs is None or not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"Sampling rate must be a positive number, got {fs!r}.")
    rate = float(contract.sampling_rate)
    if float(fs) == rate:
        return np.array(x, dtype=np.float32, copy=True)
    n_out = resampled_length(x.shape[1], float(fs), rate)
    if n_out * x.shape[2] > MAX_RECORD_VALUES:
        raise ValueError(
            f"Resampling {x.shape[1]} samples from {fs:g} Hz to {rate:g} Hz gives {n_out} samples per record, "
            f"more than ecgsoup handles at once ({MAX_RECORD_VALUES} values); check the sampling rate, or split "
            "the recording."
        )
    return sps.resample(np.asarray(x, dtype=np.float64), n_out, axis=1).astype(np.float32)
