"""Classification targets defined on the bundled LUDB sample (and the shared LUDB labels).

The same three tasks run in ``make demo``, ``benchmarks/quality.py`` and
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

__all__ = ["LUDB_TASKS", "ludb_targets"]

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
