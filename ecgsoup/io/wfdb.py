"""One WFDB record (``.hea`` + ``.dat``/``.mat``): its header checked, known quirks repaired, read in mV.

A header that lies about its signal files would make ``wfdb`` return
plausible numbers from the wrong bytes, so the header is checked against the
files before any sample is read, and a Challenge ``.mat`` that WFDB would
misread is read with scipy instead (noted in the record's metadata).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ecgsoup.io._paths import record_stem
from ecgsoup.io._units import FS_RANGE, TO_MV
from ecgsoup.io.records import ECGRecord, RecordError
from ecgsoup.leads import canonical_lead_names
from ecgsoup.signal import lead_indices

__all__ = ["read_wfdb"]


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
    low, high = FS_RANGE
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
    stem = record_stem(path)
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
        factor = TO_MV.get(str(unit or "mV").strip().lower())
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
