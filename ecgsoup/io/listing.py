"""The records of an input listed without reading their signals, each with how to read it alone.

This is what stores and distributed runs use: a :class:`RecordList` is small,
and its :class:`RecordSource` travels to a worker that reads one record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgsoup.io._inputs import derive_missing_leads, input_ids, list_inputs, read_input
from ecgsoup.io._units import FS_RANGE, TO_MV
from ecgsoup.io.ids import check_ids, ids_list
from ecgsoup.io.npz import open_npz
from ecgsoup.io.ptbxl import PTBXL_RATES, is_ptbxl_root, ptbxl_table, record_below_root
from ecgsoup.io.records import ECGRecord
from ecgsoup.io.wfdb import read_wfdb

__all__ = ["RecordSource", "RecordList", "list_records"]


@dataclass(frozen=True)
class RecordSource:
    """How to read one record of an input, given its item: small, so it travels to Dask workers.

    Attributes
    ----------
    kind : {"npz", "wfdb", "ptbxl", "files"}
        ``"files"``: a folder (or one file) holding hospital exports, maybe
        beside WFDB records; each item is ``(format, path)``.
    path : str
        Absolute path of the input (the ``.npz``, the folder or record, the PTB-XL root).
    sampling_rate : float or None
        ``.npz`` only: Hz of ``x``.
    lead_names : tuple of str
        ``.npz`` only: names of ``x``'s last axis.
    units : str
        ``.npz`` only: units of ``x``.
    ptbxl_rate : int or None
        PTB-XL only: which copy (100 or 500 Hz) is read.
    derive_leads : bool
        Compute the limb leads a record lacks from I and II (see :func:`read_records`).
    acquisition_date : bool
        Keep a hospital file's acquisition date in the record's metadata.
    """

    kind: str
    path: str
    sampling_rate: float | None = None
    lead_names: tuple = ()
    units: str = "mV"
    ptbxl_rate: int | None = None
    derive_leads: bool = False
    acquisition_date: bool = False

    def read(self, item, record_id=None) -> ECGRecord:
        """One :class:`ECGRecord` in mV; raises :class:`RecordError` for a bad file."""
        if self.kind == "npz":
            x = open_npz(self.path)["x"][item]
            factor = TO_MV.get(self.units.strip().lower(), 1.0)
            signal = (x.astype(np.float64) * factor).astype(np.float32)
            record = ECGRecord(record_id, signal, self.sampling_rate, self.lead_names, "mV", {"path": self.path})
            return derive_missing_leads(record, self.derive_leads)
        if self.kind == "files":
            fmt, path = item
            return read_input(fmt, path, record_id, derive_leads=self.derive_leads,
                               acquisition_date=self.acquisition_date)  # fmt: skip
        record = read_wfdb(record_below_root(Path(self.path), item) if self.kind == "ptbxl" else item)
        if record_id is not None:
            record.record_id = record_id
        return derive_missing_leads(record, self.derive_leads)


@dataclass
class RecordList:
    """The records of an input, in a fixed order: what :func:`list_records` returns.

    Attributes
    ----------
    source : RecordSource
        Reads record ``i`` with ``source.read(items[i], record_ids[i])``.
    items : list
        What locates each record (an index of ``x``, a record path).
    record_ids : list
        One distinct identifier per record (``ecg_id`` for PTB-XL, the record
        name for WFDB folders, ``record_id`` of an ``.npz``, the content hash
        or file name of a hospital file).
    formats : list of str
        The format of each record (``"wfdb"``, ``"dicom"``, ``"ge_muse"`` ...,
        ``"unknown"`` for a file whose content matches none); empty for
        ``.npz`` and PTB-XL inputs.
    """

    source: RecordSource
    items: list
    record_ids: list
    formats: list = field(default_factory=list)

    def format_counts(self) -> dict:
        """``{format: number of records}``, most frequent first."""
        counts: dict = {}
        for fmt in self.formats:
            counts[fmt] = counts.get(fmt, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def __len__(self) -> int:
        return len(self.record_ids)


def list_records(path, *, sampling_rate=None, ptbxl_rate=100, derive_leads=False, id_from="hash",
                 acquisition_date=False) -> RecordList:  # fmt: skip
    """List the records of an input without reading their signals.

    Parameters
    ----------
    path : str or Path
        A folder of WFDB / Challenge records and hospital exports (every
        ``*.hea`` and every DICOM, HL7 aECG, GE MUSE, Philips, SCP-ECG, EDF or
        BDF file below it, recognised from its content), a single record or
        file, a PTB-XL root, or an ``.npz`` holding ``x`` (records, time,
        leads), ``fs``, ``lead_names`` and optionally ``record_id`` (or
        ``ecg_id``) and ``units``.
    sampling_rate : float, default=None
        Hz of an ``.npz`` without an ``fs`` entry (refused for other inputs,
        whose headers carry their rate).
    ptbxl_rate : {100, 500}, default=100
        Which copy of a PTB-XL root to list (``records100`` or ``records500``).
    derive_leads, id_from, acquisition_date
        As in :func:`read_records`; kept in the returned ``source``.

    Returns
    -------
    records : RecordList

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the input holds no record (an empty folder, a PTB-XL root without
        the requested copy) or an ``.npz`` lacks what it needs.
    """
    listing = _list_records(path, sampling_rate, ptbxl_rate, id_from)
    if derive_leads or acquisition_date:
        listing.source = dataclasses.replace(listing.source, derive_leads=bool(derive_leads),
                                             acquisition_date=bool(acquisition_date))  # fmt: skip
    return listing


def _list_records(path, sampling_rate, ptbxl_rate, id_from) -> RecordList:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder.")
    if path.is_file() and path.suffix == ".npz":
        return _list_npz(path, sampling_rate)
    if sampling_rate is not None:
        raise ValueError(
            "sampling_rate is only used for .npz input without an 'fs' entry; WFDB records carry "
            "their own rate in the header."
        )
    if is_ptbxl_root(path):
        rate = int(ptbxl_rate) if ptbxl_rate is not None else 100
        table, column = ptbxl_table(path, rate, folds=None)
        if table.empty:
            raise ValueError(f"{path}: no PTB-XL record in {PTBXL_RATES[rate][0]}/ (no *.hea file, no table row).")
        ids = check_ids(table["ecg_id"], f"{path}: ecg_id")
        source = RecordSource("ptbxl", str(path.resolve()), ptbxl_rate=rate)
        return RecordList(source, [str(v) for v in table[column]], ids)
    inputs = list_inputs(path)  # every *.hea and hospital file below a folder, or one record or file
    if any(fmt != "wfdb" for fmt, _ in inputs):
        ids = input_ids(inputs, path if path.is_dir() else path.parent, id_from)
        items = [(fmt, str(p.resolve())) for fmt, p in inputs]
        return RecordList(RecordSource("files", str(path.resolve())), items, ids,
                          [fmt or "unknown" for fmt, _ in inputs])  # fmt: skip
    stems = [stem for _, stem in inputs]
    if not stems:
        raise ValueError(f"{path}: no WFDB record (*.hea) and no recognised ECG file in this folder.")
    names = [stem.name for stem in stems]
    if len(set(names)) < len(names):
        # Same record name in two sub-folders: the path below the root tells them apart.
        base = path if path.is_dir() else path.parent
        names = [stem.relative_to(base).as_posix() for stem in stems]
    return RecordList(RecordSource("wfdb", str(path.resolve())), [str(s.resolve()) for s in stems], names,
                      ["wfdb"] * len(stems))  # fmt: skip


def _list_npz(path: Path, sampling_rate) -> RecordList:
    data = open_npz(str(path.resolve()))
    if "x" not in data:
        raise ValueError(
            f"{path} has no 'x' array. An input .npz holds x (records, time, leads), fs and "
            f"lead_names (and optionally record_id); it has {sorted(data)}."
        )
    x = data["x"]
    if "lead_names" not in data:
        raise ValueError(f"{path} has no 'lead_names' array naming the leads of x's last axis.")
    names = np.asarray(data["lead_names"])
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise ValueError(
            f"{path}: lead_names is {names.dtype} of shape {names.shape}; it must list one name per lead, "
            "e.g. np.array(['I', 'II', 'V1'])."
        )
    lead_names = tuple(str(n) for n in names)
    if x.ndim != 3 or x.shape[2] != len(lead_names):
        hint = " It looks lead-major; store x as (records, time, leads)." if (
            x.ndim == 3 and x.shape[1] == len(lead_names)) else ""  # fmt: skip
        raise ValueError(
            f"{path}: x has shape {x.shape}, expected (records, time, {len(lead_names)} leads) "
            f"for lead_names {list(lead_names)}.{hint}"
        )
    if len(x) == 0:
        raise ValueError(f"{path}: x holds no record (shape {x.shape}).")
    fs = _npz_rate(path, data["fs"]) if "fs" in data else None
    if fs is None and sampling_rate is None:
        raise ValueError(
            f"{path} has no 'fs' entry: pass the sampling rate of x in Hz (--sampling-rate / "
            "sampling_rate=). ecgsoup never guesses it."
        )
    if fs is not None and sampling_rate is not None and float(sampling_rate) != fs:
        raise ValueError(f"{path} says fs={fs:g} Hz but sampling_rate={sampling_rate!r} was given; drop one.")
    if sampling_rate is not None:
        _npz_rate(path, sampling_rate, "--sampling-rate / sampling_rate")
    ids_key = next((k for k in ("record_id", "ecg_id") if k in data), None)
    ids = list(np.asarray(data[ids_key])) if ids_key else list(range(len(x)))
    if len(ids) != len(x) or np.ndim(data[ids_key] if ids_key else ids) != 1:
        raise ValueError(f"{path}: '{ids_key}' must hold {len(x)} distinct identifiers, one per record.")
    if ids_key:
        ids = ids_list(check_ids(ids, f"{path}: '{ids_key}'", numeric_text=False))
    units = str(data["units"]) if "units" in data else "mV"  # irrelevant to the model: windows are z-scored
    rate = fs if fs is not None else float(sampling_rate)
    return RecordList(RecordSource("npz", str(path.resolve()), rate, lead_names, units), list(range(len(x))), ids)


def _npz_rate(path: Path, value, name="fs") -> float:
    """A sampling rate given in an ``.npz`` (or for it): one plausible number of Hz."""
    array = np.asarray(value)
    low, high = FS_RANGE
    if array.size == 1 and array.dtype.kind in "biuf":
        rate = float(array.reshape(-1)[0])
        if np.isfinite(rate) and low <= rate <= high:
            return rate
    shown = f"shape {array.shape}" if array.size != 1 else repr(array.reshape(-1)[0].item())
    raise ValueError(
        f"{path}: {name} is {shown}; it must be one sampling rate in Hz, between {low:g} and {high:g} "
        "(e.g. fs=500)."
    )
