"""Records streamed into one dataset: a bad record raises or is set aside, the rest are stacked."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from ecgsoup.io.records import ECGDataset, ECGRecord, RecordError
from ecgsoup.signal import resample

__all__ = ["ON_ERROR", "check_on_error", "guarded", "collect"]

ON_ERROR = ("skip", "raise")


def check_on_error(on_error) -> None:
    """Refuse an ``on_error`` other than ``"skip"`` or ``"raise"``."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected 'skip' or 'raise'.")


def guarded(items, read, on_error, errors) -> Iterator[ECGRecord]:
    """Apply ``read`` to each item; failures raise or go to ``errors``."""
    for item in items:
        try:
            yield read(item)
        except RecordError as exc:
            if on_error == "raise":
                raise
            errors.append((str(item[1] if isinstance(item, tuple) else item), str(exc)))


def collect(records: Iterable[ECGRecord], *, errors, sampling_rate, length, source) -> ECGDataset:
    """Stack records into an :class:`ECGDataset`, enforcing one rate, lead set and length."""
    if length is not None and length != "ragged":
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"length={length!r}; expected None, a positive number of samples, or 'ragged'.")
    signals, rows, rates, lead_sets = [], [], {}, {}
    for record in records:
        x, fs = record.signal, record.fs
        if sampling_rate is not None and fs != sampling_rate:
            x, fs = resample(x, fs, sampling_rate, axis=0), float(sampling_rate)
        if length not in (None, "ragged"):
            if len(x) < length:
                where = record.metadata.get("path", record.record_id)
                errors.append((str(record.record_id), f"{where}: {len(x)} samples, fewer than length={length}."))
                continue
            x = x[:length]
        rates.setdefault(fs, []).append(record.record_id)
        lead_sets.setdefault(record.lead_names, []).append(record.record_id)
        signals.append(x)
        # The reader's own fields win over a header comment that happens to share a name.
        fixed = {"record_id": record.record_id, "fs": record.fs, "n_samples": record.n_samples}
        rows.append({**fixed, **{k: v for k, v in record.metadata.items() if k not in fixed}})
    if not signals:
        detail = f" ({len(errors)} unreadable: {errors[0][1]})" if errors else ""
        raise ValueError(f"No readable ECG record in {source}{detail}.")
    if len(rates) > 1:
        summary = ", ".join(f"{fs:g} Hz: {len(ids)} records (e.g. {ids[0]})" for fs, ids in rates.items())
        raise ValueError(
            f"Records in {source} have different sampling rates ({summary}). "
            "Pass sampling_rate=<Hz> to resample them all to one rate."
        )
    if len(lead_sets) > 1:
        summary = "; ".join(
            f"[{', '.join(names)}]: {len(ids)} records (e.g. {ids[0]})" for names, ids in lead_sets.items()
        )
        raise ValueError(
            f"Records in {source} have different leads ({summary}). "
            "Pass leads=[...] to select the same leads, by name, from every record."
        )
    lengths = {len(x) for x in signals}
    if len(lengths) > 1 and length != "ragged":
        raise ValueError(
            f"Records in {source} have different lengths ({min(lengths)} to {max(lengths)} samples). "
            "Pass length=<n> to keep the first n samples of each record, or length='ragged' "
            "to get a list of arrays; read_records() streams them one by one."
        )
    X = np.stack(signals) if len(lengths) == 1 else signals
    if errors:
        shown = "; ".join(f"{name}: {message}" for name, message in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        warnings.warn(
            f"Skipped {len(errors)} record(s) in {source}, listed in ECGDataset.errors: {shown}{more}",
            stacklevel=3,
        )
    return ECGDataset(
        X=X,
        lead_names=next(iter(lead_sets)),
        sampling_rate=next(iter(rates)),
        record_ids=[row["record_id"] for row in rows],
        metadata=pd.DataFrame(rows),
        units="mV",
        errors=errors,
    )
