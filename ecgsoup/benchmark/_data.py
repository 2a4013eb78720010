"""The PTB-XL data of the benchmark: folds, labels and the six tasks built on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import MultiLabelBinarizer

from ecgsoup.tasks import (
    PTBXL_TASKS,
    bundled_scp_statements,
    parse_scp_codes,
    ptbxl_task_labels,
    read_scp_statements,
)

TRAIN_FOLDS = tuple(range(1, 9))
MIN_SCORED_RECORDS = 100  # fewer scored records: a warning in the results
MAX_ABSENT_FRACTION = 0.2  # more classes absent from the scored fold: a warning in the results
SUMMARY_ROWS = {
    "best layer (chosen on validation)": "chosen layer",
    "PPA": "PPA",
    "random weights (layer chosen on validation)": "random weights",
    "clinical features": "clinical features",
    "clinical features + best layer": "hybrid (clinical + chosen layer)",
}
VALIDATION_FOLD = 9
TEST_FOLD = 10
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0)


# --- data ---------------------------------------------------------------------------------


@dataclass
class PTBXLData:
    """PTB-XL records with their folds and statement codes, in either layout.

    ``codes[i]`` is ``None`` for a record without labels (the withheld fold 10
    of the z-scored subset).
    """

    X: np.ndarray
    sampling_rate: float
    lead_names: tuple
    units: str
    ecg_id: np.ndarray
    fold: np.ndarray
    codes: list
    statements: pd.DataFrame
    source: str

    def __len__(self) -> int:
        return len(self.ecg_id)

    @property
    def labelled(self) -> np.ndarray:
        return np.array([c is not None for c in self.codes])


def _subset_layout(root: Path) -> bool:
    return (root / "labels.csv").exists() and any(root.glob("*.npz"))


def _load_subset(root: Path, statements) -> PTBXLData:
    labels = pd.read_csv(root / "labels.csv")
    missing = {"ecg_id", "strat_fold", "scp_codes"} - set(labels.columns)
    if missing:
        raise ValueError(f"{root / 'labels.csv'} lacks the columns {sorted(missing)} (ecg_id, strat_fold, scp_codes).")
    by_id = {int(i): parse_scp_codes(c) or None for i, c in zip(labels["ecg_id"], labels["scp_codes"])}
    shards = sorted(root.glob("*.npz"))
    ids, folds, rate, leads, units = [], [], None, None, "z-scored"
    for shard in shards:  # ids and folds first: each shard's signals then go straight to their sorted places
        with np.load(shard, allow_pickle=False) as data:
            need = {"x", "ecg_id", "strat_fold", "fs", "lead_names"} - set(data.files)
            if need:
                raise ValueError(f"{shard} lacks the arrays {sorted(need)}; expected x, ecg_id, strat_fold, fs, lead_names.")
            shard_rate, shard_leads = float(data["fs"]), tuple(str(n) for n in data["lead_names"])
            if rate is not None and (shard_rate, shard_leads) != (rate, leads):
                raise ValueError(f"{shard} has another sampling rate or lead order than the other shards.")
            rate, leads = shard_rate, shard_leads
            ids.append(data["ecg_id"].astype(np.int64))
            folds.append(data["strat_fold"].astype(np.int64))
    ecg_id, fold = np.concatenate(ids), np.concatenate(folds)
    order = np.argsort(ecg_id, kind="stable")
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    X, start = None, 0
    for shard, shard_ids in zip(shards, ids):
        with np.load(shard, allow_pickle=False) as data:
            x = data["x"]
        if len(x) != len(shard_ids):
            raise ValueError(f"{shard} has {len(x)} signals but {len(shard_ids)} ecg_id values; they must match.")
        if X is None:
            X = np.empty((len(order), *x.shape[1:]), dtype=np.float32)
        elif x.shape[1:] != X.shape[1:]:
            raise ValueError(f"{shard} has signals of shape {x.shape[1:]}, the other shards {X.shape[1:]}.")
        if np.issubdtype(x.dtype, np.integer):  # int16 = z x 1000
            x = x.astype(np.float32)
            x /= 1000.0
        X[place[start : start + len(x)]] = x
        start += len(x)
    codes = [by_id.get(int(i)) for i in ecg_id[order]]
    return PTBXLData(X, rate, leads, units, ecg_id[order], fold[order], codes, statements,
                     f"PTB-XL z-scored subset (folder {root.name})")  # fmt: skip


def _load_full(root: Path, rate: int, statements) -> PTBXLData:
    from ecgsoup.io import read_ptbxl

    dataset = read_ptbxl(root, sampling_rate=rate, on_error="raise")
    meta = dataset.metadata
    codes = [parse_scp_codes(c) or None for c in meta["scp_codes"]]  # no statement at all: unlabelled
    return PTBXLData(np.asarray(dataset.X, dtype=np.float32), float(dataset.sampling_rate), tuple(dataset.lead_names),
                     dataset.units, np.asarray(dataset.record_ids, dtype=np.int64),
                     meta["strat_fold"].to_numpy().astype(np.int64), codes, statements,
                     f"PTB-XL download (folder {root.name}, records{rate})")  # fmt: skip


def load_ptbxl_benchmark_data(root, *, rate=100, scp_statements=None) -> PTBXLData:
    """Read PTB-XL for the benchmark, from a full download or from the z-scored subset.

    Parameters
    ----------
    root : str or Path
        Either a PTB-XL download (``records100/`` or ``records500/`` with
        ``ptbxl_database.csv`` and ``scp_statements.csv``) or a folder of npz
        shards (``x`` time-major, ``ecg_id``, ``strat_fold``, ``fs``,
        ``lead_names``) with a ``labels.csv`` (``ecg_id``, ``strat_fold``,
        ``scp_codes`` joined by ``;``).
    rate : {100, 500}, default=100
        Which copy of a full download to read (``records100`` or ``records500``).
    scp_statements : str or Path, optional
        The statement table.  Default: ``root/scp_statements.csv``; for the
        subset layout, ecgsoup's bundled copy of PTB-XL's table when the root
        has none.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass a PTB-XL download or the z-scored subset folder.")
    table = Path(scp_statements) if scp_statements else root / "scp_statements.csv"
    if _subset_layout(root):
        statements = read_scp_statements(table) if table.exists() else bundled_scp_statements()
        return _load_subset(root, statements)
    if rate not in (100, 500):
        raise ValueError(f"rate={rate!r}; PTB-XL ships records100 (100 Hz) and records500 (500 Hz).")
    present = [r for r in (100, 500) if (root / f"records{r}").is_dir()]
    if not present:
        raise FileNotFoundError(
            f"{root} is neither a PTB-XL download (no records100/ or records500/) nor the z-scored "
            "subset (npz shards with labels.csv)."
        )
    if rate not in present:
        other = present[0]
        raise FileNotFoundError(
            f"{root} has records{other}/ but no records{rate}/; pass rate={other} (--rate {other} on "
            "the command line) to use the copy you have."
        )
    if not (root / "ptbxl_database.csv").exists():
        raise FileNotFoundError(
            f"{root} has no ptbxl_database.csv; the benchmark needs its scp_codes and strat_fold "
            "columns (it ships with the PTB-XL download)."
        )
    if not table.exists():
        raise FileNotFoundError(
            f"{table} does not exist; the six tasks are built from PTB-XL's scp_statements.csv "
            "(it ships with the download), or pass scp_statements=PATH (--scp-statements)."
        )
    return _load_full(root, rate, read_scp_statements(table))


# --- metric -------------------------------------------------------------------------------


@dataclass
class Task:
    name: str
    classes: list
    rows: np.ndarray  # indices into the data of the records with a label
    Y: np.ndarray
    train: np.ndarray  # positions into rows
    scored: np.ndarray
    inner: list  # (train, validation) position pairs inside ``train`` for choosing
    n_defined: int


def build_task(data: PTBXLData, task: str, scored_fold: int, selection: str) -> Task:
    labelled = np.flatnonzero(data.labelled)
    labels = ptbxl_task_labels([data.codes[i] for i in labelled], data.statements, task)
    keep = np.array([len(lab) > 0 for lab in labels])
    rows = labelled[keep]
    labels = [lab for lab, k in zip(labels, keep) if k]
    classes = sorted({c for lab in labels for c in lab})
    Y = MultiLabelBinarizer(classes=classes).fit_transform(labels)
    fold = data.fold[rows]
    train = np.flatnonzero(np.isin(fold, TRAIN_FOLDS))
    scored = np.flatnonzero(fold == scored_fold)
    if selection == "validation":
        validation = np.flatnonzero(fold == VALIDATION_FOLD)
        inner = [(train, validation)]
    else:  # two-fold cross-validation inside the training folds: folds 1-4 against 5-8
        half = (fold[train] - 1) // 4
        inner = [(train[half != k], train[half == k]) for k in range(2)]
        inner = [(tr, va) for tr, va in inner if len(tr) and len(va)]  # tiny data: a pair may be empty
    if not len(train) or not len(scored) or not inner:
        raise ValueError(
            f"Task {task!r} has {len(train)} training and {len(scored)} scored records with labels; "
            "too few to run the benchmark."
        )
    return Task(task, classes, rows, Y, train, scored, inner, PTBXL_TASKS[task])
