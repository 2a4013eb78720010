"""PTB-XL's own layout: the record table, the ``records100``/``records500`` copies, folds and SCP codes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ecgsoup.io._collect import check_on_error, collect, guarded
from ecgsoup.io._inputs import derive_missing_leads, select_leads
from ecgsoup.io._paths import walk_headers
from ecgsoup.io.ids import check_ids
from ecgsoup.io.records import ECGDataset, RecordError
from ecgsoup.io.wfdb import read_wfdb

__all__ = ["read_ptbxl", "is_ptbxl_root", "PTBXL_RATES"]

# Tables naming PTB-XL's records: the download's own, else the one of ecgsoup's test sample.
PTBXL_TABLES = ("ptbxl_database.csv", "labels.csv")
# Sampling rate -> (folder of that copy, table column of its record paths).
PTBXL_RATES = {100: ("records100", "filename_lr"), 500: ("records500", "filename_hr")}


def is_ptbxl_root(path: Path) -> bool:
    """Whether ``path`` is a PTB-XL folder (it holds ``records100/`` or ``records500/``)."""
    return path.is_dir() and any((path / d).is_dir() for d, _ in PTBXL_RATES.values())


def _ptbxl_id(name: str):
    """``"00841_lr"`` -> 841 (PTB-XL's ``ecg_id``); other names are kept as they are."""
    digits = re.match(r"\d+", name)
    return int(digits.group()) if digits else name


def ptbxl_table(root: Path, sampling_rate: int, folds) -> tuple[pd.DataFrame, str]:
    """PTB-XL's record table (``ptbxl_database.csv``, else the sample's ``labels.csv``)."""
    if sampling_rate not in PTBXL_RATES:
        raise ValueError(f"sampling_rate={sampling_rate!r}; PTB-XL ships 100 and 500 Hz records.")
    folder, column = PTBXL_RATES[sampling_rate]
    if not (root / folder).is_dir():
        present = [(rate, d) for rate, (d, _) in PTBXL_RATES.items() if (root / d).is_dir()]
        where = " and ".join(f"{d}/ ({rate} Hz)" for rate, d in present) or "neither records100/ nor records500/"
        hint = (
            f": read that copy with sampling_rate={present[0][0]} (`ecgsoup embed --ptbxl-rate "
            f"{present[0][0]}`, `ecgsoup benchmark ptbxl --rate {present[0][0]}`)"
            if present else ""
        )
        raise ValueError(
            f"{root} has no {folder}/ (PTB-XL's {sampling_rate} Hz copy); it holds {where}{hint}."
        )
    table_path = next((root / t for t in PTBXL_TABLES if (root / t).exists()), None)
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
        stems = walk_headers(root / folder)
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


def record_below_root(root: Path, relative: str) -> Path:
    """``root / relative``, refused when a symlink takes its files outside the root.

    The records folder itself may be a link (PTB-XL kept on another disk):
    what counts is the resolved root, or the resolved ``records100``/``records500``.
    """
    stem = root / relative
    allowed = [root.resolve()] + [(root / folder).resolve() for folder, _ in PTBXL_RATES.values()]
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


def ptbxl_items(root: Path, table: pd.DataFrame, column: str, leads, derive_leads=False):
    """``(rows, read)``: the table's rows and how to read one as a record carrying its row as metadata."""
    def read(row):
        record = read_wfdb(record_below_root(root, row[column]), leads=None if derive_leads else leads)
        record.record_id = row["ecg_id"]
        record.metadata = {**record.metadata, **row}
        return select_leads(derive_missing_leads(record, derive_leads), leads) if derive_leads else record

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
    return ptbxl_dataset(root, sampling_rate, folds, leads, length, on_error, resample_to=None)


def ptbxl_dataset(root, sampling_rate, folds, leads, length, on_error, resample_to,
                  derive_leads=False) -> ECGDataset:  # fmt: skip
    """:func:`read_ptbxl`, with the records resampled to ``resample_to`` and limb leads derived if asked."""
    check_on_error(on_error)
    root = Path(root).expanduser()
    if not is_ptbxl_root(root):
        raise FileNotFoundError(f"{root} is not a PTB-XL folder (no records100/ or records500/ inside).")
    table, column = ptbxl_table(root, sampling_rate, folds)
    if table.empty:
        raise ValueError(f"No PTB-XL record in {root} matches folds={folds!r}.")
    errors: list = []
    items, read = ptbxl_items(root, table, column, leads, derive_leads)
    records = guarded(items, read, on_error, errors)
    return collect(records, errors=errors, sampling_rate=resample_to, length=length, source=root)
