"""The named tasks of public datasets: LUDB's three and PTB-XL's six standard ones.

Each is a fixed definition, so that numbers are comparable across runs and
papers; a labels column of your own is read by :mod:`ecgsoup.targets`.

The same three LUDB tasks run in ``make demo``, ``benchmarks/quality.py`` and
``benchmarks/reproduce.py``, so their numbers are comparable:

* ``atrial_fibrillation`` -- binary: first rhythm statement is atrial
  fibrillation (15 of 200 records);
* ``hypertrophy`` -- binary: any hypertrophy statement (142 of 200);
* ``rhythm`` -- multiclass: the first rhythm statement (7 classes, some with
  2-4 records; macro AUC over the classes present in each test fold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "LUDB_TASKS",
    "PTBXL_TASKS",
    "PTBXL_TASK_NAMES",
    "bundled_scp_statements",
    "ludb_targets",
    "parse_scp_codes",
    "scp_codes_dict",
    "ptbxl_task_classes",
    "ptbxl_task_labels",
    "read_scp_statements",
]

LUDB_TASKS = ("atrial_fibrillation", "hypertrophy", "rhythm")


def _present(column: pd.Series) -> np.ndarray:
    return column.fillna("").astype(str).str.strip().ne("").to_numpy().astype(int)


def ludb_targets(labels: pd.DataFrame, tasks=LUDB_TASKS) -> dict[str, np.ndarray]:
    """Targets of the LUDB tasks from a labels table (``ludb_labels.csv`` columns).

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per record with ``rhythm_primary`` and ``hypertrophy`` columns,
        e.g. ``load_sample().metadata``.
    tasks : sequence of str, default=LUDB_TASKS

    Returns
    -------
    targets : dict of str to ndarray
    """
    rhythm = labels["rhythm_primary"].fillna("").astype(str).str.strip()
    known = {
        "atrial_fibrillation": lambda: (rhythm == "Atrial fibrillation").to_numpy().astype(int),
        "hypertrophy": lambda: _present(labels["hypertrophy"]),
        "rhythm": lambda: rhythm.to_numpy(),
    }
    unknown = set(tasks) - set(known)
    if unknown:
        raise ValueError(f"Unknown LUDB task(s) {sorted(unknown)}; known: {list(known)}.")
    return {task: known[task]() for task in tasks}


# --- PTB-XL: the six standard tasks -------------------------------------------------------

#: The six PTB-XL tasks of the standard benchmark (Strodthoff et al. 2021), with the
#: number of statements each has in PTB-XL's ``scp_statements.csv``.
PTBXL_TASKS = {"all": 71, "diag": 44, "sub": 23, "super": 5, "form": 19, "rhythm": 12}

PTBXL_TASK_NAMES = {
    "all": "all statements",
    "diag": "diagnostic statements",
    "sub": "diagnostic sub-classes",
    "super": "diagnostic super-classes",
    "form": "form statements",
    "rhythm": "rhythm statements",
}


def bundled_scp_statements() -> pd.DataFrame:
    """PTB-XL's ``scp_statements.csv`` (71 statements, CC BY 4.0), shipped with ecgsoup."""
    from importlib.resources import files

    return read_scp_statements(files("ecgsoup.data") / "ptbxl_scp_statements.csv")


def read_scp_statements(path) -> pd.DataFrame:
    """Read PTB-XL's ``scp_statements.csv`` (index: the statement code).

    Raises a ``ValueError`` naming the missing columns when the file is not that table.
    """
    table = pd.read_csv(path, index_col=0)
    needed = {"diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"}
    missing = needed - set(table.columns)
    if missing:
        raise ValueError(
            f"{path} is not PTB-XL's scp_statements.csv: it lacks the columns {sorted(missing)}."
        )
    table.index = table.index.astype(str).str.strip()
    return table


def ptbxl_task_classes(statements: pd.DataFrame) -> dict[str, list[str]]:
    """Every class of the six tasks, as the standard benchmark defines them.

    ``all``: every statement; ``diag``: statements with ``diagnostic == 1``;
    ``sub`` / ``super``: their ``diagnostic_subclass`` / ``diagnostic_class``;
    ``form``: ``form == 1``; ``rhythm``: ``rhythm == 1``.  On PTB-XL's table
    this gives 71, 44, 23, 5, 19 and 12 classes.
    """
    diagnostic = statements[statements["diagnostic"] == 1]
    return {
        "all": sorted(statements.index),
        "diag": sorted(diagnostic.index),
        "sub": sorted(diagnostic["diagnostic_subclass"].dropna().astype(str).unique()),
        "super": sorted(diagnostic["diagnostic_class"].dropna().astype(str).unique()),
        "form": sorted(statements.index[statements["form"] == 1]),
        "rhythm": sorted(statements.index[statements["rhythm"] == 1]),
    }


def parse_scp_codes(value) -> list[str]:
    """The statement codes of one record, whatever their likelihood.

    Accepts PTB-XL's dict string (``"{'NORM': 100.0, 'SR': 0.0}"``), an
    already parsed dict, or a ``;``-joined list (``"NORM;SR"``).  Every key
    counts, including likelihood 0, as in the standard benchmark.
    """

    if isinstance(value, dict):
        return sorted(str(k) for k in value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("{"):
        return sorted(str(k) for k in scp_codes_dict(text))
    return sorted({code.strip() for code in text.split(";") if code.strip()})


# A PTB-XL scp_codes cell holds a handful of codes; a longer one is not a statement list.
_SCP_CELL_LIMIT = 10_000


def scp_codes_dict(text: str) -> dict:
    """PTB-XL's dict string (``"{'NORM': 100.0}"``) as a dict, parsed as a literal, never run.

    Raises a one-line ``ValueError`` for anything else: an unclosed dict, a
    cell too long or too deeply nested to be a list of codes, numbers beyond
    Python's digit limit, or a literal that is not a dict of string codes.
    """
    import ast

    text = str(text).strip()
    if len(text) > _SCP_CELL_LIMIT:
        raise ValueError(f"scp_codes value {text[:40]!r}... is {len(text)} characters long, not a dict of codes.")
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as error:
        # RecursionError / MemoryError: thousands of nested brackets overflow the parser.
        reason = type(error).__name__ if isinstance(error, (RecursionError, MemoryError)) else "malformed"
        raise ValueError(f"scp_codes value {text[:60]!r} is not a valid dict string ({reason}).") from None
    if not isinstance(parsed, dict) or not all(isinstance(k, str) for k in parsed):
        raise ValueError(f"scp_codes value {text[:60]!r} is not a dict of statement codes.")
    return parsed


def ptbxl_task_labels(codes: list[list[str]], statements: pd.DataFrame, task: str) -> list[list[str]]:
    """Each record's labels for ``task`` (a list per record; empty when it has none).

    Raises a ``ValueError`` naming the code and the record position when a
    code is not in ``statements``: a wrong or outdated statement table would
    otherwise silently drop labels.
    """
    if task not in PTBXL_TASKS:
        raise ValueError(f"Unknown PTB-XL task {task!r}; known: {list(PTBXL_TASKS)}.")
    known = set(statements.index)
    for i, record_codes in enumerate(codes):
        unknown = [c for c in record_codes if c not in known]
        if unknown:
            raise ValueError(
                f"record {i} has SCP code(s) {unknown} that are not in scp_statements.csv; "
                "use the statement table of the same PTB-XL release as the labels."
            )
    classes = set(ptbxl_task_classes(statements)[task])
    if task in ("sub", "super"):
        column = "diagnostic_subclass" if task == "sub" else "diagnostic_class"
        mapping = statements.loc[statements["diagnostic"] == 1, column].dropna().astype(str)
        return [sorted({mapping[c] for c in record_codes if c in mapping.index}) for record_codes in codes]
    return [sorted(c for c in record_codes if c in classes) for record_codes in codes]
