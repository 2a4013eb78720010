"""A numpy array of ECGs you already have, wrapped as a dataset in millivolts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgsoup.io._units import TO_MV
from ecgsoup.io.records import ECGDataset
from ecgsoup.leads import canonical_lead_names

__all__ = ["from_array"]


def from_array(x, sampling_rate, lead_names, units="mV", record_ids=None, metadata=None) -> ECGDataset:
    """Wrap a numpy array of ECGs as an :class:`ECGDataset` in mV.

    Parameters
    ----------
    x : array-like of shape (n_records, n_samples, n_leads)
        Time-major signals (a single ``(n_samples, n_leads)`` record is also
        accepted).  Integer arrays are fine (e.g. int16 microvolts).
    sampling_rate : float
        Sampling rate in Hz.
    lead_names : sequence of str
        Name of each column of the last axis.
    units : {"mV", "uV", "V"}, default="mV"
        Units of ``x``; the result is converted to mV.
    record_ids : sequence, optional
        Default ``0 .. n_records-1``.
    metadata : pandas.DataFrame, optional
        One row per record, kept next to ``record_id``.

    Returns
    -------
    dataset : ECGDataset
    """
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"x must be (n_records, n_samples, n_leads); got shape {x.shape}.")
    lead_names = canonical_lead_names(lead_names)
    if x.shape[2] != len(lead_names):
        hint = " It looks lead-major; pass x.transpose(0, 2, 1)." if x.shape[1] == len(lead_names) else ""
        raise ValueError(
            f"x has {x.shape[2]} leads on its last axis but lead_names lists {len(lead_names)}.{hint}"
        )
    factor = TO_MV.get(str(units).strip().lower())
    if factor is None:
        raise ValueError(f"units={units!r}; expected a voltage unit such as 'mV', 'uV' or 'V'.")
    if sampling_rate is None or not np.isfinite(sampling_rate) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate!r}.")
    record_ids = list(range(len(x))) if record_ids is None else list(record_ids)
    if len(record_ids) != len(x):
        raise ValueError(f"{len(record_ids)} record_ids for {len(x)} records.")
    meta = pd.DataFrame({"record_id": record_ids})
    if metadata is not None:
        if len(metadata) != len(x):
            raise ValueError(f"metadata has {len(metadata)} rows for {len(x)} records.")
        extra = pd.DataFrame(metadata).reset_index(drop=True)
        meta = pd.concat([meta, extra.drop(columns=["record_id"], errors="ignore")], axis=1)
    signals = (x.astype(np.float64) * factor).astype(np.float32) if factor != 1 else x.astype(np.float32)
    return ECGDataset(
        X=signals,
        lead_names=lead_names,
        sampling_rate=float(sampling_rate),
        record_ids=record_ids,
        metadata=meta,
        units="mV",
    )
