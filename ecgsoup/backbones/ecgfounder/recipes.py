"""Record-level preprocessing recipes of the ECGFounder family.

``finetune_recipe`` is the filtering the authors apply to every record before
fine-tuning (their data-set classes): a 50 Hz notch, a 0.67-40 Hz Butterworth
band-pass and the subtraction of a running-median baseline.  The z-score over
the whole window that follows it is the embedder's ``window_norm``, not part
of the recipe.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal as sps
from scipy.ndimage import median_filter

__all__ = ["BAND_HZ", "BASELINE_SECONDS", "NOTCH_HZ", "NOTCH_Q", "finetune_recipe"]

NOTCH_HZ = 50.0
NOTCH_Q = 30.0
BAND_HZ = (0.67, 40.0)
BAND_ORDER = 4
BASELINE_SECONDS = 0.4


def _resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    """Polyphase resampling along time (axis 1), as the plain ``resample`` recipe does."""
    if float(fs) == float(target):
        return x
    ratio = Fraction(target / fs).limit_denominator(1000)
    if abs(float(ratio) - target / fs) > 1e-9 * (target / fs):
        raise ValueError(f"Cannot resample {fs} Hz to {target} Hz with a rational factor.")
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=1)


def finetune_recipe(x: np.ndarray, fs: float, contract) -> np.ndarray:
    """ECGFounder's fine-tuning filters: notch 50 Hz, band-pass 0.67-40 Hz, median baseline removal.

    Parameters
    ----------
    x : ndarray of shape (n_records, n_samples, n_leads)
        Time-major float64 ECGs in the contract's lead order.
    fs : float
        Sampling rate of ``x`` in Hz.
    contract : InputContract
        The target contract; only ``sampling_rate`` is used.

    Returns
    -------
    ndarray of shape (n_records, n_samples_out, n_leads), float64
        The filtered records at ``contract.sampling_rate``.

    Notes
    -----
    The records are first resampled to the contract rate (polyphase), because
    the authors filter their 500 Hz data at 500 Hz.  Then, per lead and with
    zero-phase forward-backward filtering of the transfer-function
    coefficients (as the original):

    1. an IIR notch at 50 Hz with quality factor 30;
    2. an order-4 Butterworth band-pass from 0.67 to 40 Hz;
    3. the subtraction of a running median over ``int(0.4 * fs) + 1`` samples
       (made odd; 201 at 500 Hz), with zeros beyond both ends of the record.

    The 50 Hz notch is kept even for data recorded on 60 Hz mains, as the
    authors do.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(
            f"Expected time-major records (n_records, n_samples, n_leads), got shape {x.shape}."
        )
    rate = float(contract.sampling_rate)
    x = _resample(x, float(fs), rate)
    b, a = sps.iirnotch(NOTCH_HZ, NOTCH_Q, rate)
    x = sps.filtfilt(b, a, x, axis=1)
    b, a = sps.butter(BAND_ORDER, list(BAND_HZ), btype="bandpass", fs=rate)
    x = sps.filtfilt(b, a, x, axis=1)
    kernel = int(BASELINE_SECONDS * rate) + 1
    kernel += 1 - kernel % 2  # a running median needs an odd window
    # A constant-zero border is what a zero-padded running median sees at both ends.
    baseline = median_filter(x, size=(1, kernel, 1), mode="constant", cval=0.0)
    return x - baseline
