"""Targets from a labels table: what one column says is predicted for each record.

A labels CSV holds one row per record; one of its columns is the target.
Its cells are read as text and turned into ``y`` in three steps:

1. :func:`parse_label_cell` reads one cell: missing-value markers (``NA``,
   ``null``, ...) are empty, a dict literal (PTB-XL's ``scp_codes``) is its keys;
2. :func:`detect_separator` finds the separator of multi-label cells
   (``"STTC, HYP"``), and refuses to guess when several occur;
3. :func:`make_target` infers the task (:func:`infer_task`) and builds ``y``,
   with a report of what it parsed, printed by ``ecgsoup evaluate`` before
   anything is fitted.

:func:`label_splits` turns a folds or groups column of the same table into
cross-validation splits.  The named tasks of the bundled datasets (LUDB,
PTB-XL's six) are in :mod:`ecgsoup.tasks`.

Errors are ``ValueError`` with one line that names the column and the fix;
the parameters share their names with the ``ecgsoup evaluate`` options, and
the messages name those options (``--target``, ``--positive``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "AUTO_FOLDS",
    "ID_COLUMNS",
    "MISSING_MARKERS",
    "OBVIOUS_NEGATIVES",
    "REGRESSION_MIN_VALUES",
    "SEPARATORS",
    "TASKS",
    "Target",
    "detect_separator",
    "infer_task",
    "is_numeric_column",
    "label_splits",
    "make_target",
    "normal_id",
    "parse_label_cell",
    "split_labels",
]

#: The prediction tasks a target can be.
TASKS = ("binary", "multiclass", "multilabel", "regression")

#: Columns that identify a record, looked for in this order.
ID_COLUMNS = ("record_id", "ecg_id", "record", "id")

#: The separators :func:`detect_separator` looks for inside label cells.
SEPARATORS = (";", ",", "|")

#: PTB-XL's official folds: used by :func:`label_splits` when the labels have this column.
AUTO_FOLDS = "strat_fold"

#: A numeric column with more distinct values than this is continuous (regression), never
#: multiclass; the same number as ``ecgsoup.nested.REGRESSION_MIN_VALUES``, kept here
#: so that reading labels (and ``ecgsoup --help``) does not import scikit-learn.
REGRESSION_MIN_VALUES = 20

#: Cells that mean "no value" in exported tables: they are empty labels, not a class of their own.
MISSING_MARKERS = frozenset({"na", "n/a", "nan", "null", "none", "<na>", "nat", "#n/a"})

#: Values that read as "no" in a two-value column: the other value is then the positive class.
OBVIOUS_NEGATIVES = frozenset({"no", "0", "false", "normal", "negative", "absent", "n"})


@dataclass
class Target:
    """A target built by :func:`make_target`.

    Attributes
    ----------
    y : ndarray
        ``(n_kept,)`` ints (binary), objects (multiclass) or floats
        (regression); ``(n_kept, n_labels)`` indicators (multilabel).
    keep : list of int
        The positions, in the cells given to :func:`make_target`, of the
        records that ``y`` describes (the others are dropped).
    task : str
        One of ``TASKS``.
    description : str
        One line: the target and its class counts.
    report : list of str
        The parsed task, line by line: what is positive, the classes and
        their counts, what happened to empty cells.
    label_names : list of str or None
        Multilabel: the label of each column of ``y``; else ``None``.
    """

    y: np.ndarray
    keep: list
    task: str
    description: str
    report: list = field(default_factory=list)
    label_names: list | None = None


def normal_id(value):
    """A record identifier as compared across a store and a labels table.

    Surrounding spaces are dropped and a whole number becomes an ``int``, so
    ``"00841"``, ``" 841"`` and ``841`` are the same record.

    Parameters
    ----------
    value : object
        An identifier as read from a CSV cell or a store.

    Returns
    -------
    key : int or str
    """
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


def _normal_id_key(value):
    """A sort key that orders numeric identifiers by number, before the others."""
    value = normal_id(value)
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value))


def parse_label_cell(value, *, separator: str | None = "auto") -> str:
    """A label cell as text to split: missing-value markers empty, a dict literal its keys.

    PTB-XL's ``scp_codes`` cells are dict strings (``{'NORM': 100.0, 'SR': 0.0}``):
    their labels are the keys, joined by ``separator`` (``;`` when it is
    ``"auto"`` or empty).  The literal is parsed as data, never run.

    Parameters
    ----------
    value : object
        The cell, as read from the labels CSV.
    separator : str or None, default="auto"
        The separator the caller splits cells with.

    Returns
    -------
    cell : str
        The stripped text; ``""`` for an empty cell or one of
        ``MISSING_MARKERS``.

    Raises
    ------
    ValueError
        When a cell starting with ``{`` is not a dict of string codes.
    """
    from ecgsoup.tasks import scp_codes_dict

    text = str(value).strip()
    if text.lower() in MISSING_MARKERS:
        return ""
    if text.startswith("{"):  # a dict literal, or a broken one: never split on its commas
        keys = [str(k).strip() for k in scp_codes_dict(text)]
        joiner = separator if separator not in ("auto", "", None) else ";"
        return joiner.join(k for k in keys if k)
    return text


def split_labels(cell: str, separator: str | None) -> list[str]:
    """The labels of one parsed cell.

    Parameters
    ----------
    cell : str
        A cell as returned by :func:`parse_label_cell`.
    separator : str or None
        ``None``: the cell is one label.

    Returns
    -------
    labels : list of str
        Stripped, non-empty pieces; ``[]`` for an empty cell.
    """
    if separator is None:
        return [cell] if cell else []
    return [part.strip() for part in cell.split(separator) if part.strip()]


def detect_separator(cells, *, target: str = "labels") -> str | None:
    """The separator of multi-label cells, ``None`` for single-label cells.

    A candidate of ``SEPARATORS`` counts only when it really separates
    labels: some piece of a split cell is a whole cell elsewhere, or recurs in
    several distinct cells.  ``"Atrial flutter, typical"`` alone in its column
    is then one label, while ``"STTC, HYP"`` next to ``"STTC"`` cells is two.

    Parameters
    ----------
    cells : list of str
        The parsed cells of the column (see :func:`parse_label_cell`).
    target : str, default="labels"
        The column's name, for the error message.

    Returns
    -------
    separator : str or None

    Raises
    ------
    ValueError
        When more than one separator qualifies.
    """
    cells = list(cells)
    distinct = sorted({v for v in cells if v})
    whole = set(distinct)
    confirmed = {}
    for separator in SEPARATORS:
        split = [c for c in distinct if separator in c]
        if not split:
            continue
        seen: dict = {}
        for cell in split:
            for piece in set(split_labels(cell, separator)):
                seen[piece] = seen.get(piece, 0) + 1
        if any(piece in whole or n > 1 for piece, n in seen.items()):
            confirmed[separator] = sum(separator in v for v in cells)
    if len(confirmed) > 1:
        found = ", ".join(f"{sep!r} in {n} cells" for sep, n in confirmed.items())
        raise ValueError(
            f"--target {target!r}: cannot tell which separator splits the labels ({found}); "
            f"pass --separator, e.g. --separator '{next(iter(confirmed))}'."
        )
    return next(iter(confirmed), None)


_BOUND = re.compile(r"^\s*(?:[<>]=?|[≤≥])\s*(?P<a>[-+]?\d+(?:\.\d+)?)\s*$|^\s*(?P<b>\d+(?:\.\d+)?)\s*\+\s*$")


def _bound(text: str):
    """The number of a bound written as a cell (">89", "90+", "<18"): ages censored for anonymity."""
    match = _BOUND.match(text)
    return None if match is None else float(match.group("a") or match.group("b"))


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return _bound(text)
    return value if value == value and abs(value) != float("inf") else None


def is_numeric_column(cells) -> bool:
    """Whether a column is a continuous target.

    Parameters
    ----------
    cells : list of str
        The parsed cells of the column.

    Returns
    -------
    numeric : bool
        ``True`` when every non-empty cell is a finite number (or a bound
        such as ``">89"`` or ``"90+"``) and there are more than
        ``REGRESSION_MIN_VALUES`` distinct values.
    """
    cells = [v for v in cells if v]
    if not cells or any(_number(v) is None for v in cells):
        return False
    return len({_number(v) for v in cells}) > REGRESSION_MIN_VALUES


def infer_task(cells, *, separator: str | None = None, positive: str | None = None) -> str:
    """The task a column of label cells asks for.

    Parameters
    ----------
    cells : list of str
        The parsed cells of the column (see :func:`parse_label_cell`).
    separator : str or None, default=None
        The separator of multi-label cells (see :func:`detect_separator`).
    positive : str or None, default=None
        A positive label named by the user.

    Returns
    -------
    task : str
        ``"regression"`` for a numeric column (see :func:`is_numeric_column`)
        without a separator or ``positive``; ``"binary"`` with ``positive``,
        or with two values (or one value and empty cells); ``"multilabel"``
        when some cell holds several labels; else ``"multiclass"``.
    """
    cells = list(cells)
    if separator is None and positive is None and is_numeric_column(cells):
        return "regression"
    if positive is not None:
        return "binary"
    labels = [split_labels(v, separator) for v in cells]
    every = {label for cell in labels for label in cell}
    if separator is not None and any(len(cell) > 1 for cell in labels):
        return "multilabel"
    if len(every) == 2 or (len(every) == 1 and any(not cell for cell in labels)):
        return "binary"
    return "multiclass"


def _counts(items) -> str:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return ", ".join(f"{name} {n}" for name, n in ordered)


def make_target(cells, *, target: str = "target", task: str | None = None, positive: str | None = None,
                separator: str | None = "auto", empty: str = "drop", min_count: int = 0) -> Target:  # fmt: skip
    """Build ``y`` from the label cells of the records, and say how it was read.

    Parameters
    ----------
    cells : list of str
        One parsed cell per record (see :func:`parse_label_cell`).
    target : str, default="target"
        The column's name, for the report and the error messages.
    task : {"binary", "multiclass", "multilabel", "regression"} or None, default=None
        ``None``: inferred by :func:`infer_task`.
    positive : str or None, default=None
        Binary: the positive label, matched as a whole cell or as one label of
        a multi-label cell.  ``None``: the other value when one of two is one
        of ``OBVIOUS_NEGATIVES``; the non-empty cells when the column has
        empty ones.
    separator : str or None, default="auto"
        The separator of labels inside a cell; ``"auto"``: :func:`detect_separator`;
        ``None`` or ``""``: every cell is one label.
    empty : {"drop", "negative"}, default="drop"
        Records with an empty cell: left out, or kept as negatives (no label;
        a class ``"(empty)"`` of their own for multiclass).  A regression
        always drops them.
    min_count : int, default=0
        Multilabel: drop labels with fewer records; multiclass: drop the
        records of classes with fewer records (0: keep all).

    Returns
    -------
    target : Target

    Raises
    ------
    ValueError
        When the column cannot be read as the task: an ambiguous separator,
        a ``positive`` that never occurs, two values and no obvious negative,
        a single class, non-numeric cells of a regression, and so on.
    """
    values = list(cells)
    separator = detect_separator(values, target=target) if separator == "auto" else (separator or None)
    if task is None:
        task = infer_task(values, separator=separator, positive=positive)
    if task == "regression":
        return _regression_target(values, target)
    labels = [split_labels(v, separator) for v in values]
    empty_rows = [i for i, v in enumerate(values) if not labels[i]]
    every = sorted({label for cell in labels for label in cell})
    split_note = f", labels split on {separator!r}" if separator is not None else ""
    report = [f"task: {task} on --target {target!r}{split_note}"]
    drop = empty == "drop"
    if task == "binary":
        return _binary_target(values, labels, every, empty_rows, target, positive, separator, drop, report)
    if task == "multiclass":
        return _multiclass_target(values, empty_rows, target, drop, min_count, report)
    if task == "multilabel":
        return _multilabel_target(values, labels, empty_rows, target, drop, min_count, report)
    raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}.")


def _binary_target(values, labels, every, empty_rows, target, positive, separator, drop, report) -> Target:
    # "Has any label" vs "has none": there the empty cells are the negatives by definition.
    definitional = positive is None and bool(empty_rows) and len(every) != 2
    if positive is not None:
        if positive not in every and positive not in values:
            raise ValueError(f"--positive {positive!r} never occurs in --target {target!r}; "
                             f"labels: {every[:10]}")  # fmt: skip
        hit = [positive in cell or positive == v for cell, v in zip(labels, values)]
        what = f"{target} {'has' if separator is not None else '=='} {positive!r}"
    elif definitional:
        hit = [bool(cell) for cell in labels]
        what = f"{target} non-empty"
    elif len(every) == 2:
        positive = _obvious_positive(every, labels, target)
        hit = [positive in cell for cell in labels]
        what = f"{target} == {positive!r}"
    else:
        raise ValueError(f"--target {target!r} has {len(every)} values {every[:10]}; "
                         "name the positive one with --positive, or use --task multiclass.")  # fmt: skip
    n_empty = len(empty_rows)
    if definitional:
        keep = list(range(len(values)))
        empty_note = f"{n_empty} records with an empty cell are the negatives (the target is 'non-empty')"
    elif drop:
        keep = [i for i in range(len(values)) if labels[i]]
        empty_note = f"{n_empty} records with an empty cell, dropped (--empty drop)"
    else:
        keep = list(range(len(values)))
        empty_note = f"{n_empty} records with an empty cell, kept as negatives (--empty negative)"
    y = np.asarray([hit[i] for i in keep], dtype=int)
    counts = np.bincount(y, minlength=2)
    report.append(f"  positive: {what}: {counts[1]} records; negative: {counts[0]} records")
    report.append(f"  empty labels: {empty_note}")
    return Target(y, keep, "binary", f"{what} ({counts[1]} positive, {counts[0]} negative)", report)


def _obvious_positive(every: list, labels: list, target: str) -> str:
    """The positive one of two values: the other of an obvious negative, else the user must say."""
    negatives = [v for v in every if v.strip().lower() in OBVIOUS_NEGATIVES]
    if len(negatives) == 1:
        return next(v for v in every if v != negatives[0])
    counts = {v: sum(v in cell for cell in labels) for v in every}
    raise ValueError(f"--target {target!r} has two values, {every[0]!r} ({counts[every[0]]} records) and "
                     f"{every[1]!r} ({counts[every[1]]}); say which is positive: --positive {every[0]!r} or "
                     f"--positive {every[1]!r}.")  # fmt: skip


def _multiclass_target(values, empty_rows, target, drop, min_count, report) -> Target:
    classes = [v if v else "(empty)" for v in values]
    if drop:
        keep = [i for i, v in enumerate(values) if v]
        empty_note = f"{len(empty_rows)} records, dropped (--empty drop)"
    else:
        keep = list(range(len(values)))
        empty_note = f"{len(empty_rows)} records, kept as the class '(empty)' (--empty negative)"
    if min_count > 1:
        sizes = {c: sum(classes[i] == c for i in keep) for c in {classes[i] for i in keep}}
        rare = sorted(c for c, n in sizes.items() if n < min_count)
        if rare:
            keep = [i for i in keep if classes[i] not in rare]
            report.append(f"  --min-count {min_count}: dropped the records of {len(rare)} rare "
                          f"classes: {_counts(c for c in classes if c in rare)}")  # fmt: skip
    y = np.asarray([classes[i] for i in keep], dtype=object)
    distinct = sorted(set(y))
    if len(distinct) < 2:
        raise ValueError(f"--target {target!r} has a single value {distinct}; nothing to classify.")
    report.append(f"  classes ({len(distinct)}): {_counts(y)}")
    report.append(f"  empty labels: {empty_note}")
    return Target(y, keep, "multiclass", f"{target} ({len(distinct)} classes)", report)


def _multilabel_target(values, labels, empty_rows, target, drop, min_count, report) -> Target:
    from sklearn.preprocessing import MultiLabelBinarizer

    if drop:
        keep = [i for i in range(len(values)) if labels[i]]
        empty_note = f"{len(empty_rows)} records, dropped (--empty drop)"
    else:
        keep = list(range(len(values)))
        empty_note = f"{len(empty_rows)} records, kept with no label (negative for every class; --empty negative)"
    if min_count > 1:
        sizes: dict = {}
        for i in keep:
            for label in labels[i]:
                sizes[label] = sizes.get(label, 0) + 1
        rare = {label for label, n in sizes.items() if n < min_count}
        if rare:
            report.append(f"  --min-count {min_count}: dropped {len(rare)} rare labels: "
                          f"{', '.join(f'{r} {sizes[r]}' for r in sorted(rare, key=lambda r: (sizes[r], r)))}")  # fmt: skip
            labels = [[label for label in cell if label not in rare] for cell in labels]
            left = [i for i in keep if not labels[i] and values[i]]
            if left and drop:
                keep = [i for i in keep if labels[i]]
                report.append(f"  {len(left)} records had only rare labels and are dropped (--empty drop)")
            elif left:
                report.append(f"  {len(left)} records had only rare labels and stay as negatives (--empty negative)")
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([labels[i] for i in keep])
    if y.shape[1] == 0:
        raise ValueError(f"--target {target!r} holds no label.")
    report.append(f"  classes ({y.shape[1]}): {_counts(label for i in keep for label in labels[i])}")
    report.append(f"  empty labels: {empty_note}")
    return Target(y, keep, "multilabel", f"{target} ({y.shape[1]} labels)", report,
                  label_names=[str(c) for c in binarizer.classes_])  # fmt: skip


def _regression_target(values: list, target: str) -> Target:
    """A continuous target; empty cells are left out."""
    keep = [i for i, v in enumerate(values) if v]
    bad = [values[i] for i in keep if _number(values[i]) is None]
    if bad:
        raise ValueError(f"--target {target!r} --task regression: {len(bad)} cells are not numbers "
                         f"(first: {bad[0]!r}); fix them or leave them empty.")  # fmt: skip
    y = np.asarray([_number(values[i]) for i in keep], dtype=float)
    bounds = sorted({values[i] for i in keep if _bound(values[i]) is not None})
    if len(np.unique(y)) < 3:
        raise ValueError(f"--target {target!r} has {len(np.unique(y))} distinct values; a regression needs "
                         "more (use --task binary or multiclass).")  # fmt: skip
    n_empty = len(values) - len(keep)
    report = [f"task: regression on --target {target!r} (a number per record; ridge regression, R² and MAE)",
              f"  values: {len(y)} records, min {y.min():g}, median {np.median(y):g}, max {y.max():g}, "
              f"{len(np.unique(y))} distinct",
              f"  empty labels: {n_empty} records, dropped (a regression has no negative class)"]  # fmt: skip
    if bounds:
        n_bound = sum(_bound(values[i]) is not None for i in keep)
        report.append(f"  bounds: {n_bound} cells such as {bounds[0]!r} are read as their number "
                      f"({_bound(bounds[0]):g}), the limit of an anonymised value")  # fmt: skip
    return Target(y, keep, "regression", f"{target} (continuous, {len(y)} records)", report)


def label_splits(rows: list, y, task: str, *, folds: str | None = None, groups: str | None = None, cv: int = 5,
                 n_repeats: int = 1, random_state: int = 0):  # fmt: skip
    """Cross-validation splits defined by a folds or groups column of the labels.

    Parameters
    ----------
    rows : list of dict
        The labels rows of the records, in the order of ``y`` (column name to cell).
    y : array-like
        The target (stratifies the group splits).
    task : str
        The task of ``y``; a multilabel target is split by groups without stratification.
    folds : str or None, default=None
        A column holding each record's test fold.  ``None``: ``AUTO_FOLDS``
        when the rows have it and ``groups`` is not given; ``"none"``: never.
    groups : str or None, default=None
        A column of groups (e.g. a patient id) that never straddle a train/test split.
    cv : int, default=5
        Folds when neither ``folds`` nor ``groups`` applies, or the number of group folds.
    n_repeats : int, default=1
        Repetitions of the group folds, each with seed ``random_state + repeat``.
    random_state : int, default=0

    Returns
    -------
    cv : int or list of (train, test) index arrays
        ``cv`` itself when no column applies.
    description : str
        One line saying how the records are split.

    Raises
    ------
    ValueError
        When a record has no fold, all records share one fold, or there are
        fewer groups than ``cv``.
    """
    folds_column = folds
    if folds_column is None and groups is None and rows and AUTO_FOLDS in rows[0]:
        folds_column = AUTO_FOLDS
    if folds_column is not None and folds_column.lower() == "none":
        folds_column = None
    if folds_column is not None:
        fold = [row[folds_column] for row in rows]
        if any(f == "" for f in fold):
            raise ValueError(f"--folds {folds_column!r}: {sum(f == '' for f in fold)} records have no fold value.")
        from sklearn.model_selection import PredefinedSplit

        codes = {f: k for k, f in enumerate(sorted(set(fold), key=_normal_id_key))}
        if len(codes) < 2:
            raise ValueError(f"--folds {folds_column!r}: all records are in one fold; nothing to test on.")
        splits = list(PredefinedSplit([codes[f] for f in fold]).split())
        auto = " (found in the labels; --folds none for --cv folds)" if folds is None else ""
        return splits, f"{len(codes)} folds from column {folds_column!r}{auto}"
    if groups is not None:
        from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

        group_of = np.asarray([row[groups] for row in rows])
        n_groups = len(set(group_of))
        if n_groups < cv:
            raise ValueError(f"--groups {groups!r}: {n_groups} groups, fewer than --cv {cv}.")
        splits = []
        for repeat in range(n_repeats):
            seed = random_state + repeat
            splitter = (GroupKFold(cv, shuffle=True, random_state=seed) if task == "multilabel"
                        else StratifiedGroupKFold(cv, shuffle=True, random_state=seed))  # fmt: skip
            splits += list(splitter.split(np.zeros(len(group_of)), y, group_of))
        return splits, f"{cv}-fold CV x {n_repeats} by groups of {groups!r} ({n_groups} groups)"
    return cv, f"{cv}-fold CV x {n_repeats}"
