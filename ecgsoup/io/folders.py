"""Reading a folder, one record or file, or a PTB-XL root: streamed record by record, or into one dataset."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

from ecgsoup.io._collect import check_on_error, collect, guarded
from ecgsoup.io._inputs import input_ids, list_inputs, read_input
from ecgsoup.io.ptbxl import is_ptbxl_root, ptbxl_dataset, ptbxl_items, ptbxl_table
from ecgsoup.io.records import ECGDataset, ECGRecord

__all__ = ["read_records", "read_dataset", "read_challenge"]


def _listed_inputs(path: Path, leads, derive_leads, id_from, acquisition_date):
    """``(items, read)`` for :func:`guarded` over a folder, record or file."""
    inputs = list_inputs(path)
    ids = input_ids(inputs, path if path.is_dir() else path.parent, id_from)
    items = [(fmt, p, rid) for (fmt, p), rid in zip(inputs, ids)]

    def read(item):
        fmt, p, rid = item
        # WFDB records keep their own names; hospital files get the listed id.
        return read_input(fmt, p, None if fmt == "wfdb" else rid, leads=leads, derive_leads=derive_leads,
                           acquisition_date=acquisition_date)  # fmt: skip

    return items, read


def read_records(path, *, leads=None, on_error="skip", errors=None, derive_leads=False, id_from="hash",
                 acquisition_date=False) -> Iterator[ECGRecord]:  # fmt: skip
    """Iterate over the records in a folder (recursively), one record or file, or a PTB-XL root.

    Records are read one at a time, so a folder larger than memory can be
    streamed.  A PTB-XL root (holding ``records100/``) yields its 100 Hz
    records with their labels; use :func:`read_ptbxl` for 500 Hz or folds.

    Parameters
    ----------
    path : str or Path
        A folder (every WFDB ``*.hea`` and every hospital export below it,
        recognised from its content: DICOM, HL7 aECG, GE MUSE, Philips
        SierraECG, SCP-ECG, EDF, BDF), a single record or file, or a PTB-XL
        root.
    leads : sequence of str, optional
        Keep only these leads, in this order (see :func:`read_wfdb`).
    on_error : {"skip", "raise"}, default="skip"
        ``"skip"``: an unreadable record is left out with a warning (and
        appended to ``errors``); ``"raise"``: :class:`RecordError` propagates.
    errors : list, optional
        Receives ``(record, message)`` for each skipped record.
    derive_leads : bool, default=False
        Compute the limb leads III, aVR, aVL and aVF a record lacks from
        its leads I and II (Einthoven, Goldberger), as 8-lead exports need;
        ``metadata["derived_leads"]`` names the computed ones.  Without it a
        missing lead stays missing.
    id_from : {"hash", "name"}, default="hash"
        Record id of a hospital file: a hash of its bytes, or its file name
        (WFDB records keep their record names).
    acquisition_date : bool, default=False
        Keep a hospital file's acquisition date in ``metadata``.

    Yields
    ------
    record : ECGRecord
    """
    check_on_error(on_error)
    path = Path(path).expanduser()
    sink = [] if errors is None else errors
    if is_ptbxl_root(path):
        table, column = ptbxl_table(path, 100, folds=None)
        items, read = ptbxl_items(path, table, column, leads, derive_leads)
    else:
        items, read = _listed_inputs(path, leads, derive_leads, id_from, acquisition_date)
    start = len(sink)
    for record in guarded(items, read, on_error, sink):
        for name, message in sink[start:]:
            warnings.warn(f"Skipped record {name}: {message}", stacklevel=2)
        start = len(sink)
        yield record
    for name, message in sink[start:]:
        warnings.warn(f"Skipped record {name}: {message}", stacklevel=2)


def read_dataset(path, *, leads=None, sampling_rate=None, length=None, on_error="skip", derive_leads=False,
                 id_from="hash", acquisition_date=False) -> ECGDataset:  # fmt: skip
    """Read every record under ``path`` into one :class:`ECGDataset`.

    Parameters
    ----------
    path : str or Path
        A folder of WFDB/Challenge records and hospital exports (searched
        recursively, formats recognised from content), a single record or
        file, or a PTB-XL root (its 100 Hz records; see :func:`read_ptbxl`).
    leads : sequence of str, optional
        Select these leads, by name, from every record.  Needed when records
        carry different lead sets.
    sampling_rate : float, optional
        Resample every record to this rate (Hz).  Needed when the records'
        rates differ; otherwise their common rate is kept.  For a PTB-XL root,
        500 reads the ``records500`` copy and any other rate resamples
        ``records100``.
    length : int or "ragged", optional
        ``None``: all records must have the same length.  An int keeps the
        first ``length`` samples (after resampling) and skips - or with
        ``on_error="raise"``, refuses - shorter records.  ``"ragged"`` keeps
        every record whole and makes ``X`` a list of arrays.
    on_error : {"skip", "raise"}, default="skip"
        What to do with an unreadable record; skipped ones are listed in
        ``errors`` and summarised in a warning.
    derive_leads, id_from, acquisition_date
        As in :func:`read_records`.

    Returns
    -------
    dataset : ECGDataset
        ``metadata["format"]`` names each hospital file's format.

    Raises
    ------
    ValueError
        If rates, leads or lengths differ without the option that reconciles
        them (the message names it), or no record is readable.
    """
    check_on_error(on_error)
    errors: list = []
    path = Path(path).expanduser()
    if is_ptbxl_root(path):
        # Read the PTB-XL copy at the requested rate when there is one, else resample the 100 Hz one.
        native = 500 if sampling_rate == 500 else 100
        return ptbxl_dataset(path, native, None, leads, length, on_error, resample_to=sampling_rate,
                           derive_leads=derive_leads)  # fmt: skip
    items, read = _listed_inputs(path, leads, derive_leads, id_from, acquisition_date)
    records = guarded(items, read, on_error, errors)
    dataset = collect(records, errors=errors, sampling_rate=sampling_rate, length=length, source=path)
    return dataset


def read_challenge(folder, *, leads=None, sampling_rate=None, length=None, on_error="skip") -> ECGDataset:
    """Read PhysioNet/CinC Challenge 2020/2021 records (``.hea`` + ``.mat``).

    The ``# Dx`` header line becomes a ``dx`` metadata column holding a tuple
    of SNOMED-CT codes (empty when the header has none); ``age`` and ``sex``
    come from their header lines.  Georgia headers with the 2020 record-name
    quirk are read (noted in ``header_repaired``).  Challenge records differ
    in rate (500 / 1000 Hz ...) and length, so ``sampling_rate`` and
    ``length`` are usually needed; see :func:`read_dataset` for all options.

    Returns
    -------
    dataset : ECGDataset
    """
    dataset = read_dataset(folder, leads=leads, sampling_rate=sampling_rate, length=length, on_error=on_error)
    meta = dataset.metadata
    if "dx" not in meta:
        meta["dx"] = [() for _ in range(len(meta))]
    else:
        meta["dx"] = [dx if isinstance(dx, tuple) else () for dx in meta["dx"]]
    return dataset
