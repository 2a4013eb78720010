"""The in-memory record types every reader returns: one record, a dataset of records, the read error."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["RecordError", "ECGRecord", "ECGDataset"]


class RecordError(ValueError):
    """A record cannot be read: missing, truncated or malformed file.

    The message names the file and what is wrong with it.
    """


@dataclass
class ECGRecord:
    """One ECG recording.

    Parameters
    ----------
    record_id : str or int
        Identifier (WFDB record name, PTB-XL ``ecg_id``, ...).
    signal : ndarray of shape (n_samples, n_leads), float32
        Time-major signal in ``units``.
    fs : float
        Sampling rate in Hz.
    lead_names : tuple of str
        Canonical lead names, one per column of ``signal``.
    units : str, default="mV"
    metadata : dict
        Everything else the file says: header comments (age, sex, ``dx``
        SNOMED codes, ...), ``path``, channels that were left out.
    """

    record_id: object
    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]
    units: str = "mV"
    metadata: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[0])

    def __repr__(self) -> str:
        return (
            f"ECGRecord({self.record_id!r}, {self.n_samples} samples x {len(self.lead_names)} "
            f"leads [{', '.join(self.lead_names)}], {self.fs:g} Hz, {self.units})"
        )


@dataclass
class ECGDataset:
    """Records that share sampling rate and leads, ready for :class:`~ecgsoup.preprocessing.ECGPreprocessor`.

    Parameters
    ----------
    X : ndarray of shape (n_records, n_samples, n_leads), float32
        Time-major signals.  Only with ``read_dataset(..., length="ragged")``
        and records of different lengths is it a list of ``(n_samples_i,
        n_leads)`` arrays instead.
    lead_names : tuple of str
        Canonical lead names of the last axis.
    sampling_rate : float
        Sampling rate in Hz.
    record_ids : list
        One identifier per record, in the order of ``X``.
    metadata : pandas.DataFrame
        One row per record (row ``i`` describes ``X[i]``): ``record_id``,
        labels, folds, paths, header fields.
    units : str, default="mV"
    errors : list of (str, str)
        ``(record, message)`` for every record that was skipped.

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, load_sample
    >>> ds = load_sample()
    >>> prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    >>> prep.fit_transform(ds.X).shape
    (200, 12000)
    """

    X: np.ndarray | list
    lead_names: tuple[str, ...]
    sampling_rate: float
    record_ids: list
    metadata: pd.DataFrame
    units: str = "mV"
    errors: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.record_ids)

    def __getitem__(self, key) -> ECGDataset:
        """The records picked by a slice, a boolean mask or integer positions, as a new dataset.

        ``X``, ``record_ids`` and ``metadata`` stay aligned, e.g.
        ``ds[ds.metadata["strat_fold"] <= 8]`` or
        ``ds[ds.metadata["label"].notna()]`` to drop unlabelled records.  An int
        gives a one-record dataset (use ``ds.X[i]`` for the array itself).
        Select by record id with :meth:`select`.
        """
        n = len(self)
        if isinstance(key, slice):
            positions = np.arange(n)[key]
        else:
            values = np.asarray(key.to_numpy() if hasattr(key, "to_numpy") else key)
            if values.ndim == 0:
                values = values.reshape(1)
            if values.dtype == bool:
                if values.shape != (n,):
                    raise IndexError(
                        f"A boolean mask must have one entry per record ({n}); got shape {values.shape}."
                    )
                positions = np.flatnonzero(values)
            elif np.issubdtype(values.dtype, np.integer):
                if values.size and (values.max() >= n or values.min() < -n):
                    raise IndexError(f"Record positions must be in [-{n}, {n}); got {values.min()}..{values.max()}.")
                positions = values % n if n else values
            else:
                raise IndexError(
                    "Index an ECGDataset with a slice, a boolean mask or integer positions; "
                    "select by record id with ds.select([...])."
                )
        X = self.X[positions] if isinstance(self.X, np.ndarray) else [self.X[i] for i in positions]
        return ECGDataset(
            X=X,
            lead_names=self.lead_names,
            sampling_rate=self.sampling_rate,
            record_ids=[self.record_ids[i] for i in positions],
            metadata=self.metadata.iloc[positions].reset_index(drop=True),
            units=self.units,
            errors=list(self.errors),
        )

    def select(self, record_ids) -> ECGDataset:
        """The records with these ids, in the order given; unknown ids raise a ``KeyError`` naming them."""
        where = {rid: i for i, rid in enumerate(self.record_ids)}
        wanted = list(record_ids)
        missing = [rid for rid in wanted if rid not in where]
        if missing:
            raise KeyError(f"{len(missing)} record id(s) are not in this dataset: {missing[:5]}")
        return self[np.array([where[rid] for rid in wanted], dtype=int)]

    def __repr__(self) -> str:
        if isinstance(self.X, np.ndarray):
            length = f"{self.X.shape[1]} samples"
        else:
            lengths = [len(x) for x in self.X] or [0]
            length = f"{min(lengths)}-{max(lengths)} samples (ragged)"
        leads = ", ".join(self.lead_names)
        return (
            f"ECGDataset({len(self)} records, {len(self.lead_names)} leads [{leads}], "
            f"{self.sampling_rate:g} Hz, {length}, {self.units}, {len(self.errors)} skipped)"
        )
