"""HuBERT-ECG's two published preprocessing pipelines, as named recipes.

**"repo"** (``hubert-ecg-repo@1``): the authors' pipeline (HuBERT-ECG
repository, ``ecg_preprocessing`` then the dataset's crop and downsampling).

1. Record level, at the original sampling rate: an FIR "band-pass" 0.05-47 Hz
   with ``int(0.3 * fs)`` taps (made odd), designed by ``scipy.signal.firwin``
   and applied forward and backward (``filtfilt``).  With so few taps the
   0.05 Hz edge is far below the filter's resolution: the filter passes DC at
   about 96 % power, so in effect it is a 47 Hz low-pass.  It is reproduced
   as is, not replaced by a "real" high-pass.
2. FFT resampling (``scipy.signal.resample``) to 500 Hz.
3. Min-max scaling of each lead to [-1, 1] over the whole record (+1e-8).
4. Per 5 s window (2,500 samples at 500 Hz): the 12 leads are concatenated
   lead by lead into one 30,000-sample vector, which is decimated by 5
   (``scipy.signal.decimate``: order-8 Chebyshev type I, zero-phase) to the
   6,000 samples the model takes.  The anti-alias filter therefore runs across
   lead boundaries; :func:`flatten_decimate` does this step per window.

**"benchmark"** (``hubert-ecg-benchmark@1``): the ICLR 2026 ECG
foundation-model benchmark's wrapper.  Its data loader cuts 5 s windows and
resamples them to 100 Hz; the wrapper then filters each window with the same
FIR design at 100 Hz (31 taps), scales each lead of each window to [-1, 1]
by min-max, and concatenates the leads.  The record level here only
resamples to 100 Hz; :func:`benchmark_window` filters and scales each window.

Record-level recipes take ``x`` time-major ``(records, samples, leads)`` in the
contract's lead order and return time-major arrays at the contract's rate.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal as sps

from ecgsoup.signal import check_finite

__all__ = [
    "BAND",
    "fir_taps",
    "fir_bandpass",
    "minmax_per_lead",
    "repo_recipe",
    "benchmark_recipe",
    "flatten_decimate",
    "benchmark_window",
]

BAND = (0.05, 47.0)
MINMAX_EPS = 1e-8
REPO_RATE = 500.0
DECIMATION = 5


def fir_taps(fs: float, band: tuple[float, float] = BAND) -> np.ndarray:
    """The FIR band-pass of both HuBERT-ECG pipelines at ``fs``.

    ``int(0.3 * fs)`` taps, made odd by adding one when even (a band-pass FIR
    needs an odd length), windowed-sinc design with a Hamming window, cut-offs
    relative to the Nyquist frequency.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz; must exceed twice the upper cut-off (94 Hz).
    band : (float, float)
        Cut-off frequencies in Hz.

    Returns
    -------
    numpy.ndarray
        The filter taps (151 at 500 Hz, 31 at 100 Hz).
    """
    fs = float(fs)
    if band[1] >= fs / 2:
        raise ValueError(
            f"HuBERT-ECG's {band[1]:g} Hz filter edge needs a sampling rate above "
            f"{2 * band[1]:g} Hz; got {fs:g} Hz."
        )
    numtaps = int(0.3 * fs)
    numtaps += 1 - numtaps % 2
    return sps.firwin(numtaps, np.asarray(band) / (fs / 2), pass_zero=False)


def fir_bandpass(x: np.ndarray, fs: float, axis: int = -1) -> np.ndarray:
    """Zero-phase (forward-backward) FIR filtering with :func:`fir_taps`, in float64.

    ``filtfilt`` pads each end with an odd reflection of ``3 * taps`` samples,
    so a signal must be longer than that (453 samples at 500 Hz, 93 at 100 Hz).
    """
    taps = fir_taps(fs)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] <= 3 * len(taps):
        raise ValueError(
            f"{x.shape[axis]} samples at {fs:g} Hz are too few for HuBERT-ECG's {len(taps)}-tap filter "
            f"(more than {3 * len(taps)} are needed)."
        )
    return sps.filtfilt(taps, [1.0], x, axis=axis)


def minmax_per_lead(x: np.ndarray, axis: int) -> np.ndarray:
    """Scale each lead to [-1, 1] along ``axis``: ``2 (x - min) / (max - min + 1e-8) - 1``."""
    low = x.min(axis=axis, keepdims=True)
    high = x.max(axis=axis, keepdims=True)
    return 2 * (x - low) / (high - low + MINMAX_EPS) - 1


def _check(x: np.ndarray, fs: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"A recipe takes (records, samples, leads); got shape {x.shape}.")
    # HuBERT-ECG's filters would spread a NaN over the whole lead.
    check_finite(x, "the signal")
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"Sampling rate must be a positive number, got {fs!r}.")
    return x


def repo_recipe(x: np.ndarray, fs: float, contract) -> np.ndarray:
    """The authors' record-level steps: FIR at ``fs``, FFT resampling, min-max per lead.

    Parameters
    ----------
    x : numpy.ndarray
        ``(records, samples, leads)``, float, in the contract's lead order.
    fs : float
        Sampling rate of ``x`` in Hz (above 94 Hz, for the 47 Hz filter edge).
    contract : InputContract
        The model's contract; its ``sampling_rate`` is the output rate (500 Hz
        for the authors' pipeline).

    Returns
    -------
    numpy.ndarray
        ``(records, int(samples * rate / fs), leads)`` float32, each lead
        scaled to [-1, 1] over the record.  The per-window concatenation and
        decimation follow in :func:`flatten_decimate`.
    """
    x = _check(x, fs)
    filtered = fir_bandpass(x, fs, axis=1)
    rate = float(contract.sampling_rate)
    if float(fs) != rate:
        # The authors truncate the target length with int(), as here.
        filtered = sps.resample(filtered, int(x.shape[1] * (rate / float(fs))), axis=1)
    return minmax_per_lead(filtered, axis=1).astype(np.float32)


def benchmark_recipe(x: np.ndarray, fs: float, contract) -> np.ndarray:
    """The benchmark's record-level step: resampling to the contract's rate (100 Hz) only.

    The benchmark resamples each 5 s window with a band-limited sinc
    (``resampy``); a polyphase resampler over the whole record
    (``scipy.signal.resample_poly``, Kaiser window) is used here, which
    agrees away from the window edges.  Filtering and scaling are per window
    (:func:`benchmark_window`).

    Parameters
    ----------
    x : numpy.ndarray
        ``(records, samples, leads)``, float, in the contract's lead order.
    fs : float
        Sampling rate of ``x`` in Hz.
    contract : InputContract
        The model's contract; its ``sampling_rate`` is the output rate.

    Returns
    -------
    numpy.ndarray
        ``(records, samples', leads)`` float32 at ``contract.sampling_rate``.
    """
    x = _check(x, fs)
    rate = float(contract.sampling_rate)
    if float(fs) == rate:
        return x.astype(np.float32)
    ratio = Fraction(rate / float(fs)).limit_denominator(1000)
    if abs(float(ratio) - rate / float(fs)) > 1e-9 * rate / float(fs):
        raise ValueError(f"Cannot resample {fs:g} Hz to {rate:g} Hz with a rational factor.")
    out = sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=1, window=("kaiser", 5.0))
    return out.astype(np.float32)


def flatten_decimate(batch: np.ndarray) -> np.ndarray:
    """The authors' last step per 5 s window: concatenate the leads, then decimate by 5.

    Parameters
    ----------
    batch : numpy.ndarray
        ``(windows, leads, time)`` at 500 Hz (2,500 samples per lead), float.

    Returns
    -------
    numpy.ndarray
        ``(windows, leads, time // 5)`` float32: the decimated lead-major
        vector of each window, cut back into rows of ``time // 5`` samples so
        that the model's own lead-major flattening restores the vector exactly.
        Near lead boundaries the rows mix neighbouring leads, as in the
        original, whose anti-alias filter runs across them.
    """
    batch = np.asarray(batch, dtype=np.float64)
    windows, leads, time = batch.shape
    if time % DECIMATION:
        raise ValueError(f"A window of {time} samples does not decimate by {DECIMATION}; expected 2,500.")
    flat = batch.reshape(windows, leads * time)
    decimated = sps.decimate(flat, DECIMATION, axis=-1)  # order-8 Chebyshev I, zero-phase
    return decimated.reshape(windows, leads, time // DECIMATION).astype(np.float32)


def benchmark_window(batch: np.ndarray, fs: float = 100.0) -> np.ndarray:
    """The benchmark's per-window steps: FIR at 100 Hz, then min-max per lead to [-1, 1].

    Parameters
    ----------
    batch : numpy.ndarray
        ``(windows, leads, time)`` at 100 Hz (500 samples per lead), float.
    fs : float
        Sampling rate of ``batch``.

    Returns
    -------
    numpy.ndarray
        ``(windows, leads, time)`` float32.
    """
    filtered = fir_bandpass(batch, fs, axis=-1)
    return minmax_per_lead(filtered, axis=-1).astype(np.float32)
