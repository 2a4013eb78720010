"""Readers for ECG files: WFDB, PhysioNet/CinC Challenge, PTB-XL, hospital exports, numpy arrays.

Every reader returns signals in **millivolts**, ``float32``, **time-major**
``(time, leads)`` per record (the layout of ``wfdb.rdsamp``), with canonical
lead names (:func:`ecgsoup.leads.canonical_lead_names`), the sampling rate and
the units.  A record that cannot be read raises :class:`RecordError` naming
the file and the problem; the collecting readers can instead skip it
(``on_error="skip"``), which lists it in :attr:`ECGDataset.errors` and warns -
a bad record is never dropped silently.

A folder may mix WFDB records with hospital exports (DICOM, HL7 aECG, GE
MUSE and Philips XML, SCP-ECG, EDF/BDF; see :mod:`ecgsoup.hospital`): each
file's format is recognised from its content.  Leads missing from a record
are never filled in, except the limb leads III, aVR, aVL and aVF when
``derive_leads=True`` asks for them to be computed from I and II.

Missing samples (NaN, e.g. WFDB's "invalid sample" code) are kept as NaN:
the reader reports the data as it is, and :class:`ecgsoup.preprocessing.ECGPreprocessor`
refuses NaN with the record's index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ecgsoup import hospital
from ecgsoup.leads import STANDARD_LEAD_ORDER, canonical_lead_names
from ecgsoup.signal import derive_limb_leads, lead_indices, resample

__all__ = [
    "RecordError",
    "ECGRecord",
    "ECGDataset",
    "read_wfdb",
    "read_records",
    "read_dataset",
    "read_challenge",
    "read_ptbxl",
    "list_records",
    "RecordSource",
    "RecordList",
    "from_array",
    "load_sample",
]

# Physical unit (lower-cased) -> factor to millivolts.  Anything else (e.g. the
# "NU" of a plethysmogram) is not an ECG voltage and is left out of `signal`.
_TO_MV = {
    "nv": 1e-6, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
}  # fmt: skip
_SIGNAL_SUFFIXES = (".hea", ".dat", ".mat", ".xyz")
_ON_ERROR = ("skip", "raise")
_PTBXL_TABLES = ("ptbxl_database.csv", "labels.csv")
_PTBXL_RATES = {100: ("records100", "filename_lr"), 500: ("records500", "filename_hr")}


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

    def __getitem__(self, key) -> "ECGDataset":
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

    def select(self, record_ids) -> "ECGDataset":
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


# --- single WFDB records ------------------------------------------------------------


def _record_stem(path) -> Path:
    path = Path(path).expanduser()
    return path.with_suffix("") if path.suffix.lower() in _SIGNAL_SUFFIXES else path


def _natural_key(path: Path):
    # "2" before "10", as in LUDB and MIT-BIH numbering.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def _parse_comments(comments) -> dict:
    """``Key: value`` header comments -> dict (keys lower-case, ``<age>`` -> ``age``).

    ``Dx`` (Challenge 2020/2021 SNOMED-CT codes) becomes a tuple of codes;
    lines without a key are kept, joined, under ``comments``.
    """
    out, free = {}, []
    for line in comments:
        key, sep, value = line.partition(":")
        key = re.sub(r"[^0-9a-z]+", "_", key.strip().strip("<>").lower()).strip("_")
        if sep and key and len(key) <= 40:
            out[key] = value.strip()
        elif line.strip():
            free.append(line.strip())
    if "dx" in out:
        out["dx"] = tuple(code.strip() for code in out["dx"].split(",") if code.strip())
    if free:
        out["comments"] = "; ".join(free)
    return out


@contextlib.contextmanager
def _readable_stem(stem: Path):
    """The stem to hand to ``wfdb``, with the one known header quirk repaired.

    Georgia records of the 2020 Challenge write ``E00001.mat 12 500 5000`` as
    their record line (the record name carries the signal file's extension),
    which wfdb rejects.  The header is then copied with the name fixed, beside
    a link to the untouched signal file.  Yields ``(stem, note)``.
    """
    header = stem.with_suffix(".hea")
    try:
        lines = header.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise RecordError(f"{header}: cannot read the header ({exc}).") from None
    first = lines[0].split() if lines else []
    if not first:
        raise RecordError(f"{header}: the header is empty (no record line); restore it from the source.")
    if first[0].lower() not in {stem.name.lower() + s for s in (".mat", ".dat")}:
        yield stem, None
        return
    fixed = "\n".join([" ".join([stem.name, *first[1:]]), *lines[1:]]) + "\n"
    files = {line.split()[0] for line in lines[1:] if line.strip() and not line.startswith("#")}
    with tempfile.TemporaryDirectory(prefix="ecgsoup-hea-") as tmp:
        (Path(tmp) / f"{stem.name}.hea").write_text(fixed)
        for name in files:
            source = stem.parent / name
            if source.exists():
                try:
                    os.symlink(source.resolve(), Path(tmp) / name)
                except OSError:  # no symlinks (e.g. some Windows setups)
                    shutil.copy(source, Path(tmp) / name)
        yield Path(tmp) / stem.name, f"header record name {first[0]!r} read as {stem.name!r}"


def _rdheader(stem: Path, header_path: Path):
    """``wfdb.rdheader``, with a truncated or malformed header blamed on the header file."""
    import wfdb

    try:
        header = wfdb.rdheader(str(stem))
    except Exception as exc:  # wfdb raises IndexError, ValueError, HeaderSyntaxError ... on bad headers
        raise RecordError(
            f"{header_path}: invalid or truncated WFDB header ({type(exc).__name__}: {exc}). "
            "Restore the header file from the source."
        ) from None
    _check_rate(header, header_path, stem)
    n_sig = int(header.n_sig or 0)
    described = len(header.file_name or [])
    if n_sig and described != n_sig:
        raise RecordError(
            f"{header_path}: the header announces {n_sig} signals but describes {described}; "
            "it looks truncated. Restore the header file from the source."
        )
    if n_sig and header.sig_len is None:
        raise RecordError(
            f"{header_path}: the record line gives no number of samples; the header looks "
            "truncated or malformed. Restore the header file from the source."
        )
    names = list(header.sig_name or [])
    if names and any(n is None for n in names) and not all(n is None for n in names):
        line = next(i for i, n in enumerate(names) if n is None) + 2
        raise RecordError(
            f"{header_path}: line {line} (signal {line - 1} of {n_sig}) is incomplete (no signal "
            "name); the header looks truncated. Restore the header file from the source."
        )
    return header


# Bits per sample of the WFDB signal formats whose files have a fixed size (not FLAC 508/516/524).
_FORMAT_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16, "212": 12}
# Sampling rates an ECG can have; anything outside comes from a header that lies.
_FS_RANGE = (1.0, 100_000.0)


def _record_line_fs(header_path: Path, readable: Path) -> str | None:
    """The sampling-rate field of a header's record line, as written (``"500"``, ``"360/720(0)"``)."""
    with contextlib.suppress(OSError):
        for line in (readable.parent / f"{readable.name}.hea").read_text(errors="replace").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                fields = line.split()
                return fields[2] if len(fields) > 2 else None
    return None


def _check_rate(header, header_path: Path, readable: Path) -> None:
    """The record line's sampling rate, as written: a plausible ECG rate that wfdb read as such."""
    written = _record_line_fs(header_path, readable)
    if written is None:
        return
    try:
        fs = float(written.split("/")[0])
    except ValueError:
        fs = float("nan")
    low, high = _FS_RANGE
    if not (np.isfinite(fs) and low <= fs <= high) or float(header.fs or 0) != fs:
        raise RecordError(
            f"{header_path}: sampling rate {written!r} on the record line is not a plausible ECG rate "
            f"({low:g} to {high:g} Hz); correct the header's third field."
        )


def _check_header_values(stem: Path, header, header_path: Path, readable: Path) -> None:
    """The size and the signal files of a header, checked before any sample is read.

    ``wfdb`` reads a signal file of any size with the format the header gives,
    so a header that lies yields plausible numbers.  Here the record must fit
    in memory, its signal files must sit beside the header, and each must hold
    exactly the bytes its header implies.
    """
    from ecgsoup.signal import MAX_RECORD_VALUES

    n_sig, n_samples = int(header.n_sig or 0), int(header.sig_len or 0)
    if n_sig and n_samples <= 0:
        raise RecordError(f"{header_path}: the record line gives {n_samples} samples; the record is empty.")
    frames = [int(f or 1) for f in (header.samps_per_frame or [1] * n_sig)]
    n_values = n_samples * sum(frames)
    if n_values > MAX_RECORD_VALUES:
        raise RecordError(
            f"{header_path}: announces {n_samples} samples x {n_sig} signals ({n_values} values), more "
            f"than ecgsoup reads at once ({MAX_RECORD_VALUES}); check the header, or split the record."
        )
    by_file: dict = {}
    for i, name in enumerate(header.file_name or []):
        by_file.setdefault(str(name), []).append(i)
    for name, signals in by_file.items():
        if "/" in name or "\\" in name or name in (".", ".."):
            raise RecordError(
                f"{header_path}: signal file {name!r} leaves the record's folder; WFDB signal files are "
                "named without a folder, beside their header. Correct the header."
            )
        fmt = str((header.fmt or [None] * n_sig)[signals[0]])
        path = stem.parent / name
        if name.lower().endswith(".mat") or fmt not in _FORMAT_BITS and fmt not in ("310", "311"):
            continue  # MAT files are checked by _check_mat_signal; FLAC formats are compressed
        if not path.is_file():
            continue  # wfdb names the missing file
        values = n_samples * sum(frames[i] for i in signals)
        offset = int((header.byte_offset or [0] * n_sig)[signals[0]] or 0)
        expected = offset + (-(-values // 3) * 4 if fmt in ("310", "311") else -(-values * _FORMAT_BITS[fmt] // 8))
        size = path.stat().st_size
        frame = max(1, -(-sum(frames[i] for i in signals) * _FORMAT_BITS.get(fmt, 11) // 8))
        if size < expected:
            raise RecordError(
                f"{stem}: cannot read the signal file {name}: it holds {size} bytes, but {header_path.name} "
                f"implies {expected} ({n_samples} samples x {len(signals)} signals in format {fmt}); it "
                "looks truncated. Restore it from the source."
            )
        if size - expected >= frame:
            raise RecordError(
                f"{stem}: the signal file {name} holds {size} bytes, but {header_path.name} implies {expected} "
                f"({n_samples} samples x {len(signals)} signals in format {fmt}): the header's format or "
                "number of samples is wrong. Correct the header."
            )


# MAT-v4 precision digit P (type code M*1000 + O*100 + P*10 + T) of the WFDB formats
# a Challenge .mat may carry: WFDB reads such a file as raw samples after `byte_offset`.
_MAT4_PRECISION = {"16": 3, "32": 2}
_MAT4_DTYPES = {0: "<f8", 1: "<f4", 2: "<i4", 3: "<i2", 4: "<u2", 5: "u1"}


def _mat_layout(path: Path):
    """``(kind, rows, cols, precision, data_offset)`` of a MAT file, from its first bytes.

    ``kind`` is ``"v4"`` (little-endian level-4 matrix, what WFDB can read),
    ``"v5"`` (MATLAB 5/7, tagged and maybe compressed: WFDB cannot) or
    ``"other"`` (HDF5-based v7.3, big-endian v4, not a MAT file at all).
    """
    with open(path, "rb") as handle:
        head = handle.read(128)
    if head[:10] == b"MATLAB 5.0":
        return "v5", None, None, None, None
    if len(head) < 20 or head[:6] == b"MATLAB":
        return "other", None, None, None, None
    mopt, rows, cols, imagf, namlen = np.frombuffer(head[:20], "<i4")
    if not 0 <= mopt < 1000 or rows < 0 or cols < 0 or imagf not in (0, 1) or not 0 < namlen < 64:
        return "other", None, None, None, None
    return "v4", int(rows), int(cols), int(mopt // 10 % 10), 20 + int(namlen)


def _check_mat_signal(stem: Path, header, header_path: Path):
    """Check a ``.mat`` signal file against its header; ``None`` when wfdb can read it as it is.

    A MAT file written transposed (samples x leads), as MAT-v5 (scipy's
    ``savemat`` default) or with another sample type is read by WFDB as raw
    bytes at the header's offset, i.e. garbage of plausible size.  When the
    matrix matches the header's signals and samples (in either orientation),
    returns ``(p_signal, note)`` read with scipy instead; otherwise refuses.
    """
    files = list(header.file_name or [])
    mats = sorted({f for f in files if str(f).lower().endswith(".mat")})
    if not mats:
        return None
    if len(set(files)) > 1:
        return None  # several signal files: not the Challenge layout; wfdb checks it
    name = mats[0]
    path = stem.parent / name
    if not path.exists():
        return None  # wfdb names the missing file
    n_sig, n_samples = int(header.n_sig), int(header.sig_len)
    kind, rows, cols, precision, offset = _mat_layout(path)
    fmts = {str(f) for f in (header.fmt or [])}
    offsets = {int(o or 0) for o in (header.byte_offset or [0])}
    if kind == "v4" and (rows, cols) == (n_sig, n_samples):
        expected = _MAT4_PRECISION.get(next(iter(fmts))) if len(fmts) == 1 else None
        if offsets == {offset} and (expected is None or precision == expected):
            return None  # the layout WFDB expects
    fix = (
        f"rewrite it as a {n_sig} x {n_samples} int16 MAT-v4 matrix, e.g. "
        f"scipy.io.savemat(path, {{'val': val}}, format='4') with val of shape ({n_sig}, {n_samples})"
    )
    if kind == "other":
        raise RecordError(
            f"{path}: not a MAT file WFDB can read (MAT-v7.3/HDF5 or big-endian); {header_path} "
            f"announces {n_sig} signals x {n_samples} samples: {fix}."
        )
    try:
        import scipy.io

        arrays = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError ...
        raise RecordError(f"{path}: cannot read the MAT file ({type(exc).__name__}: {exc}); {fix}.") from None
    values = arrays.get("val", next(iter(arrays.values())) if len(arrays) == 1 else None)
    values = None if values is None else np.asarray(values)
    if values is None or values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        raise RecordError(
            f"{path}: holds {sorted(arrays)}, no single numeric matrix 'val'; {header_path} "
            f"announces {n_sig} signals x {n_samples} samples: {fix}."
        )
    if values.shape == (n_sig, n_samples):
        how = "a MAT-v5 file" if kind == "v5" else f"another sample type or offset than {header_path.name} says"
    elif values.shape == (n_samples, n_sig):
        how = f"transposed ({n_samples} samples x {n_sig} signals{', MAT-v5' if kind == 'v5' else ''})"
        values = values.T
    else:
        raise RecordError(
            f"{path}: the matrix is {values.shape[0]} x {values.shape[1]}, but {header_path} announces "
            f"{n_sig} signals x {n_samples} samples. Fix the header, or {fix}."
        )
    gain = np.asarray(header.adc_gain, dtype=np.float64)
    gain = np.where(gain == 0, 200.0, gain)  # WFDB's default gain
    baseline = np.asarray(header.baseline if header.baseline is not None else [0] * n_sig, dtype=np.float64)
    p_signal = (values.astype(np.float64).T - baseline) / gain
    note = f"{name} is {how}; read it with scipy instead of as raw WFDB samples"
    return p_signal, note


def _rdrecord(stem: Path):
    """The ``wfdb`` record of ``stem`` (header checked first), and notes on repairs made.

    Returns ``(record, header_note, signal_note)``.  Errors of the header name
    the ``.hea`` file; errors of the samples name the signal file.
    """
    import wfdb

    header_path = stem.with_suffix(".hea")
    with _readable_stem(stem) as (readable, header_note):
        header = _rdheader(readable, header_path)
        _check_header_values(stem, header, header_path, readable)
        repaired = _check_mat_signal(stem, header, header_path)
        if repaired is not None:
            header.p_signal, signal_note = repaired
            return header, header_note, signal_note
        try:
            record = wfdb.rdrecord(str(readable))
        except Exception as exc:  # wfdb raises ValueError, OSError, IndexError, ... on bad files
            files = sorted({str(f) for f in (header.file_name or [])})
            raise RecordError(
                f"{stem}: cannot read the signal file {', '.join(files) or '(none named)'} "
                f"({type(exc).__name__}: {exc}). It may be truncated or not match its header."
            ) from exc
    return record, header_note, None


def read_wfdb(path, *, leads=None) -> ECGRecord:
    """Read one WFDB record (``.hea`` + ``.dat``/``.mat``) into millivolts.

    Handles every WFDB signal format ``wfdb`` reads (16, 212 as in MIT-BIH,
    MATLAB ``.mat`` as in the PhysioNet Challenges, several signal files as in
    PTB-DB) and the record-name quirk of the Challenge 2020 Georgia headers.

    Parameters
    ----------
    path : str or Path
        The record, with or without extension (``.../00841_lr``,
        ``.../A0001.hea`` and ``.../A0001.mat`` are the same record).
    leads : sequence of str, optional
        Keep only these leads, in this order (matched by name, any common
        spelling).  Default: every voltage channel in file order.

    Returns
    -------
    record : ECGRecord
        ``signal`` float32 ``(n_samples, n_leads)`` in mV.  Channels that are
        not voltages (a plethysmogram in "NU", ...) are left out and listed in
        ``metadata["skipped_channels"]``; header comments are parsed into
        ``metadata`` (``age``, ``sex``, ``dx``, ...).

    Raises
    ------
    RecordError
        Missing header or signal file, truncated or malformed data, no voltage
        channel, or a requested lead that the record lacks.
    """
    stem = _record_stem(path)
    header = stem.with_suffix(".hea")
    if not header.exists():
        raise RecordError(f"{header}: no such WFDB header file (a record is read from its .hea).")
    record, note, signal_note = _rdrecord(stem)
    signal = record.p_signal
    if signal is None or signal.ndim != 2 or signal.shape[0] != record.sig_len:
        shape = None if signal is None else signal.shape
        raise RecordError(
            f"{stem}: header announces {record.sig_len} samples x {record.n_sig} signals, "
            f"but the data read as {shape}."
        )
    names = canonical_lead_names(record.sig_name or [f"ch{i}" for i in range(record.n_sig)])
    units = list(record.units or ["mV"] * record.n_sig)
    keep, scale, skipped = [], [], {}
    for i, (name, unit) in enumerate(zip(names, units)):
        factor = _TO_MV.get(str(unit or "mV").strip().lower())
        if factor is None:
            skipped[name] = unit
        else:
            keep.append(i)
            scale.append(factor)
    if not keep:
        raise RecordError(f"{stem}: no voltage channel (units {units}); nothing to read as ECG.")
    signal = (signal[:, keep] * np.asarray(scale)).astype(np.float32)
    names = tuple(names[i] for i in keep)
    metadata = _parse_comments(record.comments or [])
    metadata.update(path=str(stem), header_units=tuple(units[i] for i in keep))
    if skipped:
        metadata["skipped_channels"] = skipped
    if note:
        metadata["header_repaired"] = note
    if signal_note:
        metadata["signal_repaired"] = signal_note
    if leads is not None:
        try:
            idx = lead_indices(names, leads)
        except ValueError as exc:
            raise RecordError(f"{stem}: {exc}") from exc
        signal, names = signal[:, idx], tuple(canonical_lead_names(leads))
    return ECGRecord(
        record_id=stem.name,
        signal=np.ascontiguousarray(signal),
        fs=float(record.fs),
        lead_names=names,
        units="mV",
        metadata=metadata,
    )


# --- folders -------------------------------------------------------------------------


def _check_on_error(on_error) -> None:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected 'skip' or 'raise'.")


def _is_ptbxl_root(path: Path) -> bool:
    return path.is_dir() and any((path / d).is_dir() for d, _ in _PTBXL_RATES.values())


def _walk_files(root: Path) -> list[Path]:
    """Every file below ``root``, following symlinked sub-folders, each folder visited once.

    ``Path.rglob`` does not enter symlinked folders, so records behind one were
    silently left out.  Folders are identified by device and inode, so a link
    back up the tree (a loop) or two links to one folder do not list a record twice.
    """
    seen: set = set()
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:
            subfolders[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            subfolders[:] = []  # a loop, or a second way into a folder already listed
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders.sort()
        found.extend(Path(folder) / name for name in files)
    return found


def _walk_headers(root: Path) -> list[Path]:
    """Every ``*.hea`` stem below ``root`` (symlinked sub-folders followed, see :func:`_walk_files`)."""
    found = [file.with_name(file.name[: -len(".hea")]) for file in _walk_files(root) if file.name.endswith(".hea")]
    return sorted(found, key=_natural_key)


def _iter_paths(path: Path) -> list[Path]:
    """Record stems under ``path``: one record, or every ``.hea`` in a folder tree (symlinks followed)."""
    if path.is_dir():
        return _walk_headers(path)
    stem = _record_stem(path)
    if stem.with_suffix(".hea").exists():
        return [stem]
    raise FileNotFoundError(
        f"{path}: neither a folder nor a WFDB record (no {stem.with_suffix('.hea').name} found)."
    )


# Extensions of hospital exports: such a file is listed even when its content is not
# recognised, so that a damaged export is reported instead of silently left out.
_HOSPITAL_SUFFIXES = {".dcm", ".dicom", ".xml", ".scp", ".edf", ".bdf"}
_NOT_RECORDS = {".npz", ".npy", ".csv", ".tsv", ".json", ".md", ".txt", ".py", ".png", ".pdf", ".lock", ".zip"}


def _iter_inputs(path: Path) -> list[tuple[str | None, Path]]:
    """``(format, path)`` of every record under ``path``: WFDB stems (``"wfdb"``) and hospital files.

    A hospital file's format comes from its content (:func:`ecgsoup.hospital.detect_format`);
    a file with a hospital extension whose content matches no format is listed with ``None``
    so that reading it names the problem.  Files of WFDB records are never sniffed.
    """
    if not path.is_dir():
        if path.is_file() and not path.with_suffix(".hea").exists() and path.suffix.lower() != ".hea":
            fmt = hospital.detect_format(path)
            if fmt is not None or path.suffix.lower() in _HOSPITAL_SUFFIXES:
                return [(fmt, path)]
        return [("wfdb", stem) for stem in _iter_paths(path)]
    stems = _iter_paths(path)
    wfdb = set(stems)
    found: list[tuple[str | None, Path]] = [("wfdb", stem) for stem in stems]
    for file in sorted(_walk_files(path), key=_natural_key):  # symlinked folders followed
        suffix = file.suffix.lower()
        if file.name.startswith(".") or suffix in _NOT_RECORDS or file.with_suffix("") in wfdb or suffix == ".hea":
            continue
        if not file.is_file() or any(part.endswith((".zarr", ".lock")) for part in file.relative_to(path).parts[:-1]):
            continue
        fmt = hospital.detect_format(file)
        if fmt is not None or suffix in _HOSPITAL_SUFFIXES:
            found.append((fmt, file))
    return found


def _input_ids(inputs, base: Path, id_from: str) -> list[str]:
    """Record ids: WFDB record names; hospital files by content hash or name; unique."""
    ids = [p.name if fmt == "wfdb" else hospital.file_id(p, id_from) for fmt, p in inputs]
    if len(set(ids)) < len(ids):
        if id_from == "name" or any(fmt == "wfdb" for fmt, _ in inputs):
            # Same name in two sub-folders (or a record and a file): the path below the root tells them apart.
            ids = [
                (p.relative_to(base).as_posix() if fmt == "wfdb" or id_from == "name" else ident)
                for (fmt, p), ident in zip(inputs, ids)
            ]
        seen: dict = {}
        for i, ident in enumerate(ids):  # byte-identical files share a hash: number the copies
            seen[ident] = seen.get(ident, 0) + 1
            if seen[ident] > 1:
                ids[i] = f"{ident}~{seen[ident]}"
    return ids


def _derive(record: ECGRecord, derive_leads: bool) -> ECGRecord:
    """Append the limb leads the record lacks, computed from I and II, when asked; say which."""
    if not derive_leads:
        return record
    try:
        signal, names, derived = derive_limb_leads(record.signal, record.lead_names)
    except ValueError as exc:
        raise RecordError(f"{record.metadata.get('path', record.record_id)}: {exc}") from None
    # The derived leads take their standard places (I, II, III, aVR, aVL, aVF, V1-V6), so an
    # 8-lead export lines up with 12-lead files of the same folder.
    rank = {name: i for i, name in enumerate(STANDARD_LEAD_ORDER)}
    order = sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(rank)), i)) if derived else range(len(names))
    record.signal = np.ascontiguousarray(signal[:, list(order)])
    record.lead_names = tuple(names[i] for i in order)
    record.metadata["derived_leads"] = derived
    return record


def _select(record: ECGRecord, leads) -> ECGRecord:
    if leads is not None:
        try:
            idx = lead_indices(record.lead_names, leads)
        except ValueError as exc:
            raise RecordError(f"{record.metadata.get('path', record.record_id)}: {exc}") from None
        record.signal = np.ascontiguousarray(record.signal[:, idx])
        record.lead_names = tuple(canonical_lead_names(leads))
    return record


def _read_input(fmt, path, record_id=None, *, leads=None, derive_leads=False, acquisition_date=False) -> ECGRecord:
    """One listed input (a WFDB stem or a hospital file), leads derived and selected as asked."""
    if fmt == "wfdb":
        record = read_wfdb(path)
    else:
        record = hospital.read_file(path, fmt=fmt, id_from="name" if record_id is not None else "hash",
                                    acquisition_date=acquisition_date)  # fmt: skip
    if record_id is not None:
        record.record_id = record_id
    return _select(_derive(record, derive_leads), leads)


def _guarded(items, read, on_error, errors) -> Iterator[ECGRecord]:
    """Apply ``read`` to each item; failures raise or go to ``errors``."""
    for item in items:
        try:
            yield read(item)
        except RecordError as exc:
            if on_error == "raise":
                raise
            errors.append((str(item[1] if isinstance(item, tuple) else item), str(exc)))


def _listed_inputs(path: Path, leads, derive_leads, id_from, acquisition_date):
    """``(items, read)`` for :func:`_guarded` over a folder, record or file."""
    inputs = _iter_inputs(path)
    ids = _input_ids(inputs, path if path.is_dir() else path.parent, id_from)
    items = [(fmt, p, rid) for (fmt, p), rid in zip(inputs, ids)]

    def read(item):
        fmt, p, rid = item
        # WFDB records keep their own names; hospital files get the listed id.
        return _read_input(fmt, p, None if fmt == "wfdb" else rid, leads=leads, derive_leads=derive_leads,
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
    _check_on_error(on_error)
    path = Path(path).expanduser()
    sink = [] if errors is None else errors
    if _is_ptbxl_root(path):
        table, column = _ptbxl_table(path, 100, folds=None)
        items, read = _ptbxl_items(path, table, column, leads, derive_leads)
    else:
        items, read = _listed_inputs(path, leads, derive_leads, id_from, acquisition_date)
    start = len(sink)
    for record in _guarded(items, read, on_error, sink):
        for name, message in sink[start:]:
            warnings.warn(f"Skipped record {name}: {message}", stacklevel=2)
        start = len(sink)
        yield record
    for name, message in sink[start:]:
        warnings.warn(f"Skipped record {name}: {message}", stacklevel=2)


def _collect(records: Iterable[ECGRecord], *, errors, sampling_rate, length, source) -> ECGDataset:
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
    _check_on_error(on_error)
    errors: list = []
    path = Path(path).expanduser()
    if _is_ptbxl_root(path):
        # Read the PTB-XL copy at the requested rate when there is one, else resample the 100 Hz one.
        native = 500 if sampling_rate == 500 else 100
        return _read_ptbxl(path, native, None, leads, length, on_error, resample_to=sampling_rate,
                           derive_leads=derive_leads)  # fmt: skip
    items, read = _listed_inputs(path, leads, derive_leads, id_from, acquisition_date)
    records = _guarded(items, read, on_error, errors)
    dataset = _collect(records, errors=errors, sampling_rate=sampling_rate, length=length, source=path)
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


# --- PTB-XL ---------------------------------------------------------------------------


def _ptbxl_id(name: str):
    """``"00841_lr"`` -> 841 (PTB-XL's ``ecg_id``); other names are kept as they are."""
    digits = re.match(r"\d+", name)
    return int(digits.group()) if digits else name


def _ptbxl_table(root: Path, sampling_rate: int, folds) -> tuple[pd.DataFrame, str]:
    """PTB-XL's record table (``ptbxl_database.csv``, else the sample's ``labels.csv``)."""
    if sampling_rate not in _PTBXL_RATES:
        raise ValueError(f"sampling_rate={sampling_rate!r}; PTB-XL ships 100 and 500 Hz records.")
    folder, column = _PTBXL_RATES[sampling_rate]
    if not (root / folder).is_dir():
        present = [(rate, d) for rate, (d, _) in _PTBXL_RATES.items() if (root / d).is_dir()]
        where = " and ".join(f"{d}/ ({rate} Hz)" for rate, d in present) or "neither records100/ nor records500/"
        hint = (
            f": read that copy with sampling_rate={present[0][0]} (`ecgsoup embed --ptbxl-rate "
            f"{present[0][0]}`, `ecgsoup benchmark ptbxl --rate {present[0][0]}`)"
            if present else ""
        )
        raise ValueError(
            f"{root} has no {folder}/ (PTB-XL's {sampling_rate} Hz copy); it holds {where}{hint}."
        )
    table_path = next((root / t for t in _PTBXL_TABLES if (root / t).exists()), None)
    if table_path is not None:
        try:
            # Ids and paths as text: one empty ecg_id cell would turn every id into a float ("841.0").
            table = pd.read_csv(table_path, dtype={"ecg_id": str, column: str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise ValueError(f"{table_path}: not a readable CSV table ({str(error).splitlines()[0]}).") from None
        if "ecg_id" not in table or column not in table:
            raise ValueError(f"{table_path} lacks the 'ecg_id' / '{column}' columns of a PTB-XL table.")
        table["ecg_id"] = check_ids(table["ecg_id"], f"{table_path}: column 'ecg_id'")
        table[column] = [_relative_record_path(p, table_path, column, i) for i, p in enumerate(table[column])]
        if "scp_codes" in table:
            table["scp_codes"] = [_scp_cell(c, table_path, i) for i, c in enumerate(table["scp_codes"])]
    else:
        stems = _walk_headers(root / folder)
        table = pd.DataFrame(
            {
                "ecg_id": check_ids([_ptbxl_id(stem.name) for stem in stems], f"{root / folder}: record names"),
                column: [str(s.relative_to(root)) for s in stems],
            }
        )
    if folds is not None:
        if "strat_fold" not in table:
            raise ValueError(
                f"{root} has no fold information (no ptbxl_database.csv or labels.csv with "
                "'strat_fold'); pass folds=None."
            )
        wanted = [folds] if np.isscalar(folds) else list(folds)
        unknown = sorted(set(wanted) - set(range(1, 11)))
        if unknown:
            raise ValueError(f"folds={folds!r}: PTB-XL folds are 1..10, got {unknown}.")
        table = table[table["strat_fold"].isin(wanted)]
    return table.reset_index(drop=True), column


def check_ids(values, where: str, numeric_text=True) -> list:
    """Record ids as ints where they are whole numbers (``"00841"`` -> 841), else stripped text.

    With ``numeric_text=False`` text ids stay text (only whole floats become ints).

    Refuses an empty id (a blank or ``NaN`` cell) and an id given to two
    records, naming the rows: either would put two recordings under one id, or
    label one recording with another's labels.
    """
    ids, empty, rows = [], [], {}
    for i, value in enumerate(values):
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if value is None or (number and not np.isfinite(value)):
            text = ""
        elif number and float(value).is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if not text:
            empty.append(i)
        rid = int(text) if (numeric_text or number) and re.fullmatch(r"-?\d{1,18}", text) else text
        ids.append(rid)
        rows.setdefault(rid, []).append(i)
    if empty:
        raise ValueError(
            f"{where} has {len(empty)} empty id(s) (row(s) {', '.join(str(i + 1) for i in empty[:5])} of "
            "the data); every record needs an id: fill them in or remove those rows."
        )
    shared = {rid: r for rid, r in rows.items() if len(r) > 1}
    if shared:
        examples = "; ".join(
            f"{rid!r} in rows {', '.join(str(i + 1) for i in r[:3])}" for rid, r in list(shared.items())[:3]
        )
        raise ValueError(
            f"{where} gives {len(shared)} id(s) to several records ({examples}); ids must be unique: "
            "remove or renumber the duplicate rows."
        )
    return ids


def _relative_record_path(value, table_path: Path, column: str, row: int) -> str:
    """A table's record path, refused when empty or when it leaves the root (``..``, absolute)."""
    text = "" if not isinstance(value, str) else value.strip()
    where = f"{table_path}: row {row + 1}, column {column!r}"
    if not text:
        raise ValueError(f"{where} is empty; every record needs its path below the PTB-XL root.")
    parts = Path(text).parts
    if Path(text).is_absolute() or text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text) or ".." in parts:
        raise ValueError(
            f"{where} is {text!r}, which leaves the PTB-XL root; paths must be relative and below it "
            "(e.g. records100/00000/00001_lr)."
        )
    return text


def _record_below_root(root: Path, relative: str) -> Path:
    """``root / relative``, refused when a symlink takes its files outside the root.

    The records folder itself may be a link (PTB-XL kept on another disk):
    what counts is the resolved root, or the resolved ``records100``/``records500``.
    """
    stem = root / relative
    allowed = [root.resolve()] + [(root / folder).resolve() for folder, _ in _PTBXL_RATES.values()]
    for suffix in (".hea", ".dat"):
        target = stem.with_suffix(suffix)
        if target.exists():
            real = target.resolve()
            if not any(real == base or base in real.parents for base in allowed):
                raise RecordError(
                    f"{target}: links to {real}, outside the PTB-XL root {root}; copy the record into "
                    "the root instead of linking out of it."
                )
    return stem


def _scp_cell(value, table_path: Path, row: int) -> dict:
    """One ``scp_codes`` cell as a dict: PTB-XL's dict string, or ``NORM;SR`` (likelihood unknown)."""
    from ecgsoup.tasks import scp_codes_dict

    if not isinstance(value, str) or not value.strip():
        return {}
    text = value.strip()
    try:
        if text.startswith("{"):
            return scp_codes_dict(text)
        if len(text) <= 10_000 and re.fullmatch(r"[\w\s/+-]+(;[\w\s/+-]+)*;?", text):
            return {code.strip(): float("nan") for code in text.split(";") if code.strip()}
        raise ValueError(f"scp_codes value {text[:60]!r} is neither a dict string nor codes joined by ';'.")
    except ValueError as error:
        raise ValueError(
            f"{table_path}: row {row + 1}: {error} Write it as {{'NORM': 100.0, 'SR': 0.0}} or NORM;SR."
        ) from None


def _ptbxl_items(root: Path, table: pd.DataFrame, column: str, leads, derive_leads=False):
    def read(row):
        record = read_wfdb(_record_below_root(root, row[column]), leads=None if derive_leads else leads)
        record.record_id = row["ecg_id"]
        record.metadata = {**record.metadata, **row}
        return _select(_derive(record, derive_leads), leads) if derive_leads else record

    return [row for row in table.to_dict("records")], read


def read_ptbxl(root, sampling_rate=100, folds=None, *, leads=None, length=None, on_error="skip") -> ECGDataset:
    """Read PTB-XL from its native folder layout.

    Parameters
    ----------
    root : str or Path
        The PTB-XL folder holding ``records100/``, ``records500/`` and
        ``ptbxl_database.csv`` (a download from PhysioNet).  A folder with a
        ``labels.csv`` holding ``ecg_id``, ``strat_fold`` and
        ``filename_lr``/``filename_hr`` (the layout of ecgsoup's test sample)
        works the same way; without either table every record under
        ``records100``/``records500`` is read, without labels or folds.
    sampling_rate : {100, 500}, default=100
        Which copy to read: ``records100`` (``filename_lr``) or ``records500``
        (``filename_hr``).  No resampling is done here.
    folds : int or sequence of int, optional
        Keep only these ``strat_fold`` values (1-10; the recommended split is
        folds 1-8 train, 9 validation, 10 test).
    leads, length, on_error
        As in :func:`read_dataset`.

    Returns
    -------
    dataset : ECGDataset
        ``record_ids`` are the ``ecg_id`` values; ``metadata`` holds every
        column of the table (``scp_codes`` parsed into dicts, ``strat_fold``,
        ``patient_id``, ...) plus the header fields.
    """
    return _read_ptbxl(root, sampling_rate, folds, leads, length, on_error, resample_to=None)


def _read_ptbxl(root, sampling_rate, folds, leads, length, on_error, resample_to, derive_leads=False) -> ECGDataset:
    _check_on_error(on_error)
    root = Path(root).expanduser()
    if not _is_ptbxl_root(root):
        raise FileNotFoundError(f"{root} is not a PTB-XL folder (no records100/ or records500/ inside).")
    table, column = _ptbxl_table(root, sampling_rate, folds)
    if table.empty:
        raise ValueError(f"No PTB-XL record in {root} matches folds={folds!r}.")
    errors: list = []
    items, read = _ptbxl_items(root, table, column, leads, derive_leads)
    records = _guarded(items, read, on_error, errors)
    return _collect(records, errors=errors, sampling_rate=resample_to, length=length, source=root)


# --- listing the records of an input (without reading their signals) ------------------------


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
            x = _npz_arrays(self.path)["x"][item]
            factor = _TO_MV.get(self.units.strip().lower(), 1.0)
            signal = (x.astype(np.float64) * factor).astype(np.float32)
            record = ECGRecord(record_id, signal, self.sampling_rate, self.lead_names, "mV", {"path": self.path})
            return _derive(record, self.derive_leads)
        if self.kind == "files":
            fmt, path = item
            return _read_input(fmt, path, record_id, derive_leads=self.derive_leads,
                               acquisition_date=self.acquisition_date)  # fmt: skip
        record = read_wfdb(_record_below_root(Path(self.path), item) if self.kind == "ptbxl" else item)
        if record_id is not None:
            record.record_id = record_id
        return _derive(record, self.derive_leads)


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
    if _is_ptbxl_root(path):
        rate = int(ptbxl_rate) if ptbxl_rate is not None else 100
        table, column = _ptbxl_table(path, rate, folds=None)
        if table.empty:
            raise ValueError(f"{path}: no PTB-XL record in {_PTBXL_RATES[rate][0]}/ (no *.hea file, no table row).")
        ids = check_ids(table["ecg_id"], f"{path}: ecg_id")
        source = RecordSource("ptbxl", str(path.resolve()), ptbxl_rate=rate)
        return RecordList(source, [str(v) for v in table[column]], ids)
    inputs = _iter_inputs(path)  # every *.hea and hospital file below a folder, or one record or file
    if any(fmt != "wfdb" for fmt, _ in inputs):
        ids = _input_ids(inputs, path if path.is_dir() else path.parent, id_from)
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


def _ids_list(array) -> list:
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return [int(v) for v in array]
    return [str(v) for v in array]


def _list_npz(path: Path, sampling_rate) -> RecordList:
    data = _npz_arrays(str(path.resolve()))
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
        ids = _ids_list(check_ids(ids, f"{path}: '{ids_key}'", numeric_text=False))
    units = str(data["units"]) if "units" in data else "mV"  # irrelevant to the model: windows are z-scored
    rate = fs if fs is not None else float(sampling_rate)
    return RecordList(RecordSource("npz", str(path.resolve()), rate, lead_names, units), list(range(len(x))), ids)


def _npz_rate(path: Path, value, name="fs") -> float:
    """A sampling rate given in an ``.npz`` (or for it): one plausible number of Hz."""
    array = np.asarray(value)
    low, high = _FS_RANGE
    if array.size == 1 and array.dtype.kind in "biuf":
        rate = float(array.reshape(-1)[0])
        if np.isfinite(rate) and low <= rate <= high:
            return rate
    shown = f"shape {array.shape}" if array.size != 1 else repr(array.reshape(-1)[0].item())
    raise ValueError(
        f"{path}: {name} is {shown}; it must be one sampling rate in Hz, between {low:g} and {high:g} "
        "(e.g. fs=500)."
    )


_NPZ_CACHE: OrderedDict = OrderedDict()
_NPZ_LOCK = threading.Lock()


def _npz_arrays(path: str) -> dict:
    """Arrays of an input ``.npz``, opened once per process (a Dask worker reads many rows).

    ``x`` is never loaded whole, so memory stays flat in the number of
    records: it is read a record at a time, with a positioned read for a
    stored (``np.savez``) member (:class:`_StoredRows`) or by decompressing
    a compressed (``np.savez_compressed``) one (:class:`_CompressedRows`).
    The other entries (``fs``, ``lead_names``, ``record_id``) are small and
    loaded.
    """
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _NPZ_LOCK:
        if key in _NPZ_CACHE:
            return _NPZ_CACHE[key]
    try:
        arrays = _open_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the .npz ({type(exc).__name__}: {exc}).") from None
    with _NPZ_LOCK:
        _NPZ_CACHE[key] = arrays
        while len(_NPZ_CACHE) > 2:
            _NPZ_CACHE.popitem(last=False)
    return arrays


def _open_npz(path: str) -> dict:
    from ecgsoup.signal import MAX_RECORD_VALUES

    with np.load(path, allow_pickle=False) as data:
        names = list(data.files)
    arrays = {}
    for name in names:
        if name == "x":
            continue
        # Sizes from the .npy headers, before anything is decompressed: a small compressed
        # member can expand to gigabytes.
        shape, _, dtype, _, _ = _member_header(path, f"{name}.npy")
        n_values = int(np.prod(shape, dtype=np.int64))
        if n_values > MAX_RECORD_VALUES:
            raise ValueError(f"{name} has shape {tuple(shape)} ({n_values} values); that is not an entry of an "
                             "ECG input. Remove it or store it elsewhere.")  # fmt: skip
        with np.load(path, allow_pickle=False) as data:
            arrays[name] = data[name]
    if "x" in names:
        arrays["x"] = _lazy_member(path, "x.npy")
    return arrays


def _member_header(path: str, member: str):
    """``(shape, fortran, dtype, header_length, info)`` of one ``.npy`` member of an ``.npz``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:  # (2, 0) and (3, 0) share the layout; 3.0 only allows utf-8 field names
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            header_length = stream.tell()
    return shape, fortran, dtype, header_length, info


def _lazy_member(path: str, member: str):
    """A record-at-a-time reader of one ``.npy`` member (whole or mapped in Fortran order)."""
    from ecgsoup.signal import MAX_RECORD_VALUES

    shape, fortran, dtype, header_length, info = _member_header(path, member)
    if dtype.hasobject:
        raise ValueError(f"{member} holds Python objects; store the signals as a numeric array.")
    if dtype.kind not in "biuf":
        raise ValueError(f"{member} holds {dtype} values; store the signals as integers or floats.")
    per_record = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if per_record > MAX_RECORD_VALUES:
        raise ValueError(
            f"{member} has shape {tuple(shape)}: {per_record} values per record, more than ecgsoup reads at "
            f"once ({MAX_RECORD_VALUES}); check the shape, or split the recordings."
        )
    expected = header_length + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != expected:
        raise ValueError(f"{member} holds {info.file_size} bytes but its header describes {expected} "
                         f"(shape {tuple(shape)}, {dtype}): the file is damaged or was not written by numpy.")
    if fortran and len(shape) > 1 and info.compress_type != zipfile.ZIP_STORED:
        # A record's samples are spread through a deflated stream: read it whole (as np.load does).
        with np.load(path, allow_pickle=False) as data:
            return data[member[: -len(".npy")]]
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw:
            # The member's bytes follow its local file header (30 bytes, the
            # name and an extra field, whose lengths are at offsets 26 and 28).
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{member}: damaged zip entry (no local file header).")
            name_length = int.from_bytes(local[26:28], "little")
            extra_length = int.from_bytes(local[28:30], "little")
        offset = info.header_offset + 30 + name_length + extra_length + header_length
        if 0 in shape:
            return np.empty(shape, dtype=dtype)
        if fortran and len(shape) > 1:
            # A record's samples are scattered through the file: map it instead.
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")
        return _StoredRows(path, shape, dtype, offset)
    return _CompressedRows(path, member, shape, dtype, header_length)


class _Rows:
    """Records (first axis) of a C-ordered ``.npy`` inside an ``.npz``, read one at a time."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), dtype, len(shape)
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        index = int(item)
        if index < 0:
            index += self.shape[0]
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"record {item} is out of range for {self.shape[0]} records.")
        data = self._read(index)
        if len(data) != self._row_bytes:
            raise ValueError(f"{self.path}: x ends before record {index} (truncated file?).")
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])

    def _read(self, index: int) -> bytes:
        raise NotImplementedError


class _StoredRows(_Rows):
    """Rows of an uncompressed member: one positioned read (``os.pread``) each.

    Nothing of the file stays in the process: a memory map would count every
    page it touched in the resident set, which grows with the input.
    """

    def __init__(self, path, shape, dtype, offset):
        super().__init__(path, shape, dtype)
        self._offset = offset

    def _read(self, index: int) -> bytes:
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(descriptor, self._row_bytes, self._offset + index * self._row_bytes)
        finally:
            os.close(descriptor)


class _CompressedRows(_Rows):
    """Rows of a compressed member, decompressed one at a time.

    Reading in order streams through the member once; going back restarts
    the decompression from the start of the member (zip has no random
    access into a deflated stream), which is slower but uses no more memory.
    """

    _archive = _stream = None  # set on first read; closed by __del__

    def __init__(self, path, member, shape, dtype, header_length):
        super().__init__(path, shape, dtype)
        self.member = member
        self._header_length = header_length
        self._lock = threading.Lock()

    def _read(self, index: int) -> bytes:
        with self._lock:
            if self._stream is None:
                self._archive = zipfile.ZipFile(self.path)
                self._stream = self._archive.open(self.member)
            self._stream.seek(self._header_length + index * self._row_bytes)
            return self._stream.read(self._row_bytes)

    def __del__(self):
        for handle in (self._stream, self._archive):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()


# --- arrays and the bundled sample ---------------------------------------------------------


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
    factor = _TO_MV.get(str(units).strip().lower())
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


def load_sample() -> ECGDataset:
    """The bundled real sample: all 200 LUDB records at 100 Hz, with labels.

    Lobachevsky University Electrocardiography Database v1.0.1 (ODC-By 1.0;
    cite Kalyakulina et al., see ``ecgsoup/data/README.md``), 12 leads, 10 s,
    resampled 500 -> 100 Hz and stored as int16 microvolts.  Note that this
    release range-normalises every lead to 1 mV peak-to-peak, so absolute
    amplitudes are not physiological.

    Returns
    -------
    dataset : ECGDataset
        ``X`` float32 ``(200, 1000, 12)`` in mV; ``metadata`` holds
        ``record_id, sex, age, rhythm, axis, conduction, extrasystoles,
        hypertrophy, pacing, ischemia, repolarization, other,
        rhythm_primary`` (multi-valued cells joined with ``"; "``).
    """
    data_dir = resources.files("ecgsoup.data")
    with resources.as_file(data_dir / "ludb_100hz.npz") as npz_path, np.load(npz_path) as npz:
        x, record_id = npz["x"], npz["record_id"]
        fs, lead_names, units = float(npz["fs"]), [str(n) for n in npz["lead_names"]], str(npz["units"])
    with resources.as_file(data_dir / "ludb_labels.csv") as csv_path:
        labels = pd.read_csv(csv_path, keep_default_na=False)
    if not np.array_equal(labels["record_id"].to_numpy(), record_id):
        raise RuntimeError(
            "ecgsoup/data is inconsistent: ludb_labels.csv and ludb_100hz.npz disagree on record order."
        )
    return from_array(x, fs, lead_names, units=units, record_ids=record_id.tolist(), metadata=labels)
