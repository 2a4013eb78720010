"""The inputs below a path (WFDB records and hospital exports): listed, named and read one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgsoup.io import hospital
from ecgsoup.io._paths import natural_key, record_stems, walk_files
from ecgsoup.io.records import ECGRecord, RecordError
from ecgsoup.io.wfdb import read_wfdb
from ecgsoup.leads import STANDARD_LEAD_ORDER, canonical_lead_names
from ecgsoup.signal import derive_limb_leads, lead_indices

__all__ = ["list_inputs", "input_ids", "read_input", "derive_missing_leads", "select_leads"]

# Extensions of hospital exports: such a file is listed even when its content is not
# recognised, so that a damaged export is reported instead of silently left out.
HOSPITAL_SUFFIXES = {".dcm", ".dicom", ".xml", ".scp", ".edf", ".bdf"}
# Files that sit beside records (tables, notes, outputs) and are never sniffed as one.
NOT_RECORDS = {".npz", ".npy", ".csv", ".tsv", ".json", ".md", ".txt", ".py", ".png", ".pdf", ".lock", ".zip"}


def list_inputs(path: Path) -> list[tuple[str | None, Path]]:
    """``(format, path)`` of every record under ``path``: WFDB stems (``"wfdb"``) and hospital files.

    A hospital file's format comes from its content (:func:`ecgsoup.io.hospital.detect_format`);
    a file with a hospital extension whose content matches no format is listed with ``None``
    so that reading it names the problem.  Files of WFDB records are never sniffed.
    """
    if not path.is_dir():
        if path.is_file() and not path.with_suffix(".hea").exists() and path.suffix.lower() != ".hea":
            fmt = hospital.detect_format(path)
            if fmt is not None or path.suffix.lower() in HOSPITAL_SUFFIXES:
                return [(fmt, path)]
        return [("wfdb", stem) for stem in record_stems(path)]
    stems = record_stems(path)
    wfdb = set(stems)
    found: list[tuple[str | None, Path]] = [("wfdb", stem) for stem in stems]
    for file in sorted(walk_files(path), key=natural_key):  # symlinked folders followed
        suffix = file.suffix.lower()
        if file.name.startswith(".") or suffix in NOT_RECORDS or file.with_suffix("") in wfdb or suffix == ".hea":
            continue
        if not file.is_file() or any(part.endswith((".zarr", ".lock")) for part in file.relative_to(path).parts[:-1]):
            continue
        fmt = hospital.detect_format(file)
        if fmt is not None or suffix in HOSPITAL_SUFFIXES:
            found.append((fmt, file))
    return found


def input_ids(inputs, base: Path, id_from: str) -> list[str]:
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


def derive_missing_leads(record: ECGRecord, derive_leads: bool) -> ECGRecord:
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


def select_leads(record: ECGRecord, leads) -> ECGRecord:
    """Keep only ``leads`` of the record, in that order (all of them when ``leads`` is None)."""
    if leads is not None:
        try:
            idx = lead_indices(record.lead_names, leads)
        except ValueError as exc:
            raise RecordError(f"{record.metadata.get('path', record.record_id)}: {exc}") from None
        record.signal = np.ascontiguousarray(record.signal[:, idx])
        record.lead_names = tuple(canonical_lead_names(leads))
    return record


def read_input(fmt, path, record_id=None, *, leads=None, derive_leads=False, acquisition_date=False) -> ECGRecord:
    """One listed input (a WFDB stem or a hospital file), leads derived and selected as asked."""
    if fmt == "wfdb":
        record = read_wfdb(path)
    else:
        record = hospital.read_file(path, fmt=fmt, id_from="name" if record_id is not None else "hash",
                                    acquisition_date=acquisition_date)  # fmt: skip
    if record_id is not None:
        record.record_id = record_id
    return select_leads(derive_missing_leads(record, derive_leads), leads)
