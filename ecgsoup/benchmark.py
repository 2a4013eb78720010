"""The PTB-XL benchmark: six standard tasks, every layer, the fusions and honest baselines.

:func:`ptbxl` runs the standard protocol of the PTB-XL benchmark (Strodthoff
et al. 2021) on the frozen encoder:

* **Tasks** from ``scp_statements.csv``: ``all`` (71 statements), ``diag``
  (44), ``sub`` (23 diagnostic sub-classes), ``super`` (5 super-classes),
  ``form`` (19) and ``rhythm`` (12); every key of a record's ``scp_codes``
  counts, whatever its likelihood.  A task keeps the records with at least one
  of its labels, and the classes that occur in the labelled records.
* **Split**: folds 1-8 train, fold 9 validation, fold 10 test.  When fold 10
  has no labels (the z-scored subset withholds them on purpose), fold 9 is the
  scored fold and every choice (probe strength, layer, fusion) is made by
  two-fold cross-validation inside folds 1-8 (folds 1-4 against 5-8), never
  on the scored fold.  The output says which fold was scored and how choices
  were made.
* **Representations**: every single layer, the layer chosen on validation,
  PPA, PMA (gate trained on the training folds), the same architecture with
  random weights (its layer chosen on validation among every fourth layer),
  clinical ECG features
  (:class:`ecgsoup.features.ECGFeatures`) and a hybrid of those features with
  the chosen layer.
* **Probes**: a standardised logistic regression (one-vs-rest), with ``C``
  chosen on validation (every class and every ``C`` of a training split in one
  batched L-BFGS solve of scikit-learn's objective); and the ECG-Soup MLP head
  (:class:`ecgsoup.mlp_head.MLPHeadClassifier`: BatchNorm, Dropout 0.25,
  Linear 256, ReLU, BatchNorm, Dropout 0.5, Linear; AdamW lr 1e-3, weight
  decay 0.05, batch 64, up to 100 epochs with early stopping on a 10 % hold-out
  of the training folds).  The fits are independent jobs for joblib
  (``n_jobs``) or a Dask cluster (``scheduler`` / ``workers``).
* **Metric**: macro ROC AUC in two variants, the ECG-Soup rule (a class with
  no positive or no negative record in the scored fold counts 0.5) and
  "classes present" (those classes are left out), each with a bootstrap 95 %
  interval over the scored records (a class that a resample happens to lose is
  left out of that resample), plus paired bootstrap intervals for "best
  fusion minus best single layer", "middle layer minus last layer" and "best
  layer (chosen on validation) minus last layer".

Each record goes through the backbone once (embeddings are cached in
``out/cache``); the wall time is reported per phase (read, preprocess, embed,
embed the random twin, features, probes, bootstrap, write) and the probe fits'
seconds per task and probe.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from ecgsoup._files import atomic_write_text
from ecgsoup.backbones._registry import load_backbone, random_twin
from ecgsoup.embedding import LayerwiseEmbedder
from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.mlp_head import MLPHeadClassifier
from ecgsoup.pma import PMA, PMAClassifier
from ecgsoup.preprocessing import ECGPreprocessor
from ecgsoup.tasks import (
    PTBXL_TASK_NAMES,
    PTBXL_TASKS,
    bundled_scp_statements,
    parse_scp_codes,
    ptbxl_task_labels,
    read_scp_statements,
)

__all__ = ["PTBXLData", "PTBXLResult", "load_ptbxl_benchmark_data", "plot_ptbxl_summary", "plot_ptbxl_task", "ptbxl",
           "ptbxl_result_from_json", "read_ptbxl_results", "class_aucs", "resample_class_aucs",
           "write_ptbxl_results"]

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
    xs, ids, folds, rate, leads, units = [], [], [], None, None, "z-scored"
    for shard in sorted(root.glob("*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            need = {"x", "ecg_id", "strat_fold", "fs", "lead_names"} - set(data.files)
            if need:
                raise ValueError(f"{shard} lacks the arrays {sorted(need)}; expected x, ecg_id, strat_fold, fs, lead_names.")
            shard_rate, shard_leads = float(data["fs"]), tuple(str(n) for n in data["lead_names"])
            if rate is not None and (shard_rate, shard_leads) != (rate, leads):
                raise ValueError(f"{shard} has another sampling rate or lead order than the other shards.")
            rate, leads = shard_rate, shard_leads
            scale = 1000.0 if np.issubdtype(data["x"].dtype, np.integer) else 1.0  # int16 = z x 1000
            xs.append(data["x"].astype(np.float32) / scale)
            ids.append(data["ecg_id"].astype(np.int64))
            folds.append(data["strat_fold"].astype(np.int64))
    X, ecg_id, fold = np.concatenate(xs), np.concatenate(ids), np.concatenate(folds)
    order = np.argsort(ecg_id, kind="stable")
    codes = [by_id.get(int(i)) for i in ecg_id[order]]
    return PTBXLData(X[order], rate, leads, units, ecg_id[order], fold[order], codes, statements,
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


def class_aucs(Y, S) -> np.ndarray:
    """Per-class ROC AUC (rank formula, ties averaged); NaN where a class lacks positives or negatives.

    ``Y`` and ``S`` are ``(..., n_records, n_classes)``; leading axes (for
    example bootstrap resamples) are kept.
    """
    Y = np.asarray(Y, dtype=float)
    ranks = rankdata(np.asarray(S, dtype=float), axis=-2)
    positives = Y.sum(axis=-2)
    negatives = Y.shape[-2] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * Y).sum(axis=-2) - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def resample_class_aucs(Y, S, counts) -> np.ndarray:
    """Per-class ROC AUC on every bootstrap resample, without building the resamples.

    ``counts[b, i]`` is how often record ``i`` is drawn in resample ``b``.  The
    result equals ``class_aucs(Y[draws], S[draws])`` exactly: ``(n_resamples,
    n_classes)``, ties averaged, NaN where a resample lacks positives or
    negatives.  A resample's Mann-Whitney count for a class is
    ``c_pos @ M @ c_neg``, with ``M`` the positives-by-negatives comparison
    (1 when the positive scores higher, 0.5 when tied), so no resample is sorted
    and all resamples of a class are one matrix product.  The counts are whole
    numbers and ``M`` holds halves, so float32 holds every partial sum exactly
    up to 4,000 scored records (float64 beyond).
    """
    Y = np.asarray(Y).astype(bool)
    S = np.asarray(S, dtype=float)
    n_resamples, n = np.shape(counts)
    dtype = np.float32 if n <= 4000 else np.float64
    counts = np.asarray(counts, dtype=dtype)
    total = counts.sum(axis=1, dtype=np.float64)
    out = np.full((n_resamples, Y.shape[1]), np.nan)
    for k in range(Y.shape[1]):
        pos, neg = np.flatnonzero(Y[:, k]), ~Y[:, k]
        if not len(pos) or not neg.any():
            continue
        # Comparisons against every record, zero for the positives: no copy of the negatives' counts.
        above = S[pos, k][:, None] - S[:, k][None, :]
        M = ((above > 0).astype(dtype) + (above == 0).astype(dtype) / 2) * neg
        c_pos = counts[:, pos]
        u = np.einsum("bn,bn->b", c_pos @ M, counts, dtype=np.float64)
        n_pos = c_pos.sum(axis=1, dtype=np.float64)
        n_neg = total - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, k] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return out


def _draw_counts(draws, n) -> np.ndarray:
    """``counts[b, i]``: how often record ``i`` occurs in resample ``draws[b]``."""
    flat = (np.asarray(draws) + n * np.arange(len(draws))[:, None]).ravel()
    return np.bincount(flat, minlength=len(draws) * n).reshape(len(draws), n)


def _macro(aucs: np.ndarray, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ECG-Soup rule: undefined classes count 0.5, classes present: undefined left out).

    ``present`` (bootstrap only) marks the classes defined on the whole scored fold.  A
    resample can lose the only positive of a rare class; that class is then left out of
    that resample's mean instead of counting 0.5, which would drag every resample towards
    0.5 and put the interval below the point estimate.  Classes absent from the scored
    fold itself still count 0.5 under the ECG-Soup rule.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if present is None:
            return np.where(np.isnan(aucs), 0.5, aucs).mean(axis=-1), np.nanmean(aucs, axis=-1)
        kept = np.nanmean(aucs[..., present], axis=-1)
        n_absent, n_all = int((~present).sum()), len(present)
        return (kept * (n_all - n_absent) + 0.5 * n_absent) / n_all, kept


# --- probes -------------------------------------------------------------------------------


def _logistic_loss_grad(w, X, Y, alpha):
    """Sum over classes of scikit-learn's L2 logistic objective and its gradient.

    Per class: mean log-loss + ``alpha / 2 * ||w_k||^2`` with ``alpha = 1 / (C n)``,
    the intercept unpenalised (the objective of
    :class:`~sklearn.linear_model.LogisticRegression`).  ``w`` is the flattened
    ``(d + 1, K)`` weight matrix, its last row the intercepts.
    """
    n, d = X.shape
    W = w.reshape(d + 1, -1)
    raw = X @ W[:d] + W[d]
    loss = (np.logaddexp(0.0, raw) - Y * raw).sum() / n + 0.5 * alpha * np.einsum("ij,ij->", W[:d], W[:d])
    residual = (expit(raw) - Y) / n
    grad = np.empty_like(W)
    grad[:d] = X.T @ residual + alpha * W[:d]
    grad[d] = residual.sum(axis=0)
    return loss, grad.ravel()


def _logistic_path(X, Y, Cs, *, max_iter=500, tol=1e-4):
    """One-vs-rest L2 logistic regressions for every class of ``Y`` at once, for each ``C`` of ``Cs``.

    The objective is a sum of independent per-class terms, so all classes are
    one L-BFGS problem over a ``(d + 1, K)`` matrix (matrix products instead of
    one solver per class); the stopping rule is scikit-learn's (every
    gradient entry under ``tol``), and each ``C`` starts from the solution at
    the next smaller one.  A class constant in ``Y`` gets that constant as its
    score, as in :class:`~sklearn.multiclass.OneVsRestClassifier`.

    Returns one ``(coef (d, K), intercept (K,), constant (K,))`` per ``C``, in
    the order given; ``constant`` is NaN for every class that was fitted.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n, d = X.shape
    positives = Y.sum(axis=0)
    varies = (positives > 0) & (positives < n)
    constant = np.where(varies, np.nan, (positives > 0).astype(float))
    Yv = np.ascontiguousarray(Y[:, varies])
    w = np.zeros((d + 1) * Yv.shape[1])
    fits = [None] * len(Cs)
    for i in np.argsort(Cs, kind="stable"):
        if Yv.shape[1]:
            w = minimize(_logistic_loss_grad, w, args=(X, Yv, 1.0 / (Cs[i] * n)), method="L-BFGS-B", jac=True,
                         options={"maxiter": max_iter, "maxls": 50, "gtol": tol,
                                  "ftol": 64 * np.finfo(float).eps}).x  # fmt: skip
        W = np.zeros((d + 1, len(varies)))
        W[:, varies] = w.reshape(d + 1, -1)
        fits[i] = (W[:d], W[d], constant)
    return fits


def _logistic_scores(X, fit) -> np.ndarray:
    """``predict_proba`` of a one-vs-rest fit of :func:`_logistic_path` on ``X``."""
    coef, intercept, constant = fit
    S = expit(np.asarray(X, dtype=np.float64) @ coef + intercept)
    fixed = ~np.isnan(constant)
    S[:, fixed] = constant[fixed]
    return S


def _standardiser():
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())


def _logistic(C: float):
    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        OneVsRestClassifier(LogisticRegression(C=C, max_iter=500)),
    )


def _mlp_head(random_state: int, n_train: int):
    """The ECG-Soup MLP head on one fixed representation, trained as the PMA rows' head is."""
    return MLPHeadClassifier(max_iter=100, early_stopping=True, validation_fraction=_hold_out(n_train),
                             n_iter_no_change=10, random_state=random_state)  # fmt: skip


def _hold_out(n_train: int) -> float:
    """10 % of the training records for early stopping, but at least 21 of them (small tasks)."""
    return float(min(0.5, max(0.1, 21 / max(n_train, 1))))


def _scores(model, X) -> np.ndarray:
    proba = model.predict_proba(X)
    return np.asarray(proba, dtype=float)


@dataclass
class _Task:
    name: str
    classes: list
    rows: np.ndarray  # indices into the data of the records with a label
    Y: np.ndarray
    train: np.ndarray  # positions into rows
    scored: np.ndarray
    inner: list  # (train, validation) position pairs inside ``train`` for choosing
    n_defined: int


def _build_task(data: PTBXLData, task: str, scored_fold: int, selection: str) -> _Task:
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
    return _Task(task, classes, rows, Y, train, scored, inner, PTBXL_TASKS[task])


@dataclass
class PTBXLResult:
    """What :func:`ptbxl` measured; ``table`` is the tidy result, one row per cell."""

    table: pd.DataFrame
    claims: pd.DataFrame
    tasks: pd.DataFrame
    scored_fold: int
    selection: str
    model: str
    source: str
    timings: dict
    figures: list = field(default_factory=list)
    n_bootstrap: int = 1000

    def to_markdown(self, probe: str = "logistic") -> str:
        """The six-task table for one probe: macro AUC [95 % interval] per representation."""
        sub = self.table[self.table["probe"] == probe]
        order = list(dict.fromkeys(sub["representation"]))
        lines = ["| representation | " + " | ".join(f"{t} ({n})" for t, n in self._task_sizes()) + " |",
                 "|---|" + "---|" * len(self._task_sizes())]  # fmt: skip
        for rep in order:
            cells = []
            for task, _ in self._task_sizes():
                row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
                if row.empty:
                    cells.append("")
                    continue
                r = row.iloc[0]
                pick = f" ({r['chosen']})" if r["chosen"] else ""
                cells.append(f"{r['auc']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]{pick}")
            lines.append(f"| {rep} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def _task_sizes(self):
        return [(t, int(n)) for t, n in zip(self.tasks["task"], self.tasks["classes_used"])]

    def warnings(self) -> list[str]:
        """One line per task scored on too few records or missing too many classes in the scored fold."""
        lines = []
        for _, t in self.tasks.iterrows():
            if t["n_scored"] < MIN_SCORED_RECORDS:
                lines.append(f"task {t['task']} is scored on {t['n_scored']} records (under {MIN_SCORED_RECORDS}): "
                             "its intervals are wide and one record moves its AUC.")  # fmt: skip
            absent = int(t["classes_absent_from_scored_fold"])
            if absent > t["classes_used"] * MAX_ABSENT_FRACTION:
                lines.append(f"task {t['task']}: {absent} of its {t['classes_used']} classes are absent from the "
                             f"scored fold and count 0.5 under the ECG-Soup rule; read the \"classes present\" "
                             "variant beside it.")  # fmt: skip
        return lines

    def tasks_markdown(self) -> str:
        """The tasks table: classes defined, used and absent from the scored fold; training and scored records."""
        lines = ["| task | classes defined | classes used | absent from the scored fold | training records "
                 "| scored records |", "|---|---|---|---|---|---|"]  # fmt: skip
        for _, t in self.tasks.iterrows():
            lines.append(f"| {t['task']} ({t['description']}) | {t['classes_defined']} | {t['classes_used']} | "
                         f"{t['classes_absent_from_scored_fold']} | {t['n_train']} | {t['n_scored']} |")  # fmt: skip
        return "\n".join(lines)

    def summary_markdown(self, probe: str = "logistic") -> str:
        """The short table: the chosen layer, PPA, random weights, clinical features and hybrid per task."""
        sub = self.table[self.table["probe"] == probe]
        names = [(rep, short) for rep, short in SUMMARY_ROWS.items() if rep in set(sub["representation"])]
        tasks = [t for t, _ in self._task_sizes()]
        lines = ["| representation | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for rep, short in names:
            cells = []
            for task in tasks:
                row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
                cells.append("" if row.empty else f"{row.iloc[0]['auc']:.3f}")
            lines.append(f"| {short} | " + " | ".join(cells) + " |")
        present = sub[sub["representation"] == "best layer (chosen on validation)"]
        cells = [f"{present[present['task'] == t].iloc[0]['auc_present']:.3f}" if (present["task"] == t).any() else ""
                 for t in tasks]  # fmt: skip
        lines.append("| chosen layer, \"classes present\" variant | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def full_markdown(self, probe: str = "logistic", variant: str = "rule") -> str:
        """Every representation and task: AUC and its interval, one compact cell each (choices in the CSV)."""
        sub = self.table[self.table["probe"] == probe]
        tasks = [t for t, _ in self._task_sizes()]
        auc, low, high = ("auc", "ci_low", "ci_high") if variant == "rule" else (
            "auc_present", "ci_present_low", "ci_present_high")  # fmt: skip
        lines = ["| representation | " + " | ".join(f"{t} ({n})" for t, n in self._task_sizes()) + " |",
                 "|---|" + "---|" * len(tasks)]  # fmt: skip
        picks = {}
        for rep in dict.fromkeys(sub["representation"]):
            cells = []
            for task in tasks:
                row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
                if row.empty:
                    cells.append("")
                    continue
                r = row.iloc[0]
                if "chosen" in rep:  # which layer or fusion was chosen: a row of its own keeps cells short
                    picks.setdefault(rep, {})[task] = str(r["chosen"]).split(", C=")[0].split(",")[0]
                cells.append(f"{r[auc]:.3f} [{r[low]:.3f}, {r[high]:.3f}]")
            lines.append(f"| {rep} | " + " | ".join(cells) + " |")
        for rep, chosen in picks.items():
            what = rep.split(" (")[0]
            lines.append(f"| *{what}: which* | " + " | ".join(chosen.get(t, "") for t in tasks) + " |")
        return "\n".join(lines)

    def report_markdown(self, *, title: str = "PTB-XL benchmark", caveats: str | None = None) -> str:
        """A results file that explains itself: summary, warnings, tasks, full tables, claims, caveats."""
        lines = [f"# {title}", "",
                 f"Model: `{self.model}`. Data: {self.source}. **Scored fold: {self.scored_fold}** (training "
                 f"folds 1-8). Choices (C, layer, fusion): {self.selection}.", "",
                 f"Macro ROC AUC on fold {self.scored_fold}, ECG-Soup rule (a class absent from the scored fold "
                 f"counts 0.5), logistic probe:", "", self.summary_markdown(), ""]  # fmt: skip
        found = self.warnings()
        if found:
            lines += ["**Warnings**", ""] + [f"- {w}" for w in found] + [""]
        lines += ["## Tasks", "", self.tasks_markdown(), ""]
        for probe in dict.fromkeys(self.table["probe"]):
            lines += [f"## {_PROBE_NAMES[probe][0].upper()}{_PROBE_NAMES[probe][1:]}", "",
                      f"Macro ROC AUC, ECG-Soup rule [bootstrap 95 % interval, {self.n_bootstrap} resamples of "
                      "the scored records]; the last rows name what was chosen. Headers: task (classes used).", "",
                      self.full_markdown(probe), ""]  # fmt: skip
        if "logistic" in set(self.table["probe"]):
            lines += ["## \"Classes present\" variant (logistic probe)", "",
                      "Classes absent from the scored fold are left out of the mean instead of counting 0.5.", "",
                      self.full_markdown("logistic", "present"), ""]  # fmt: skip
        lines += ["## The paper's two claims, as measured here", "",
                  "Paired bootstrap over the same resampled records (ECG-Soup rule).", "",
                  "| probe | task | claim | difference | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
        for _, c in self.claims.iterrows():
            lines.append(f"| {c['probe']} | {c['task']} | {c['claim']} | {c['difference']:+.3f} | "
                         f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['verdict']} |")  # fmt: skip
        lines += ["", "## Caveats", "", caveats if caveats is not None else self.caveats()]
        return "\n".join(lines) + "\n"

    def caveats(self) -> str:
        """What every reader of these numbers needs to know, from the run itself."""
        n_claims = len(self.claims)
        return "\n".join([
            f"- **Scored fold.** Fold {self.scored_fold}; choices were made {self.selection}. Published PTB-XL "
            "numbers are fold-10 scores on the full dataset (21,799 records).",
            "- **Classes.** A task uses the classes that occur in its labelled records; under the ECG-Soup rule "
            "a class absent from the scored fold counts 0.5, so the more classes are absent (tasks table), the "
            "lower the score; the \"classes present\" variant leaves them out.",
            f"- **Intervals.** Percentile bootstrap over the scored records ({self.n_bootstrap} resamples); "
            "a class that a resample loses is left out of that resample.",
            "- **Rows.** The per-layer rows show every layer, so the best of them is optimistic; quote the row "
            "\"best layer (chosen on validation)\".",
            f"- **Claims.** {n_claims} paired intervals; at 95 % about one in twenty excludes 0 by chance alone.",
        ]) + "\n"

    def summary(self) -> str:
        """A plain-text report: which fold was scored, the two tables, the two claims."""
        head = (
            f"PTB-XL benchmark, model {self.model}; data: {self.source}\n"
            f"Scored fold: {self.scored_fold} (train folds 1-8). Choices (C, layer, fusion): {self.selection}.\n"
            f"Macro ROC AUC, ECG-Soup rule (a class absent from fold {self.scored_fold} counts 0.5), "
            f"[bootstrap 95 % interval, {self.n_bootstrap} resamples of the scored records]; "
            "column headers give the classes used.\n"
        )
        parts = [head, *[f"WARNING: {w}" for w in self.warnings()], "\n" + self.tasks_markdown()]
        for probe in dict.fromkeys(self.table["probe"]):
            parts.append(f"\nProbe: {_PROBE_NAMES[probe]}\n" + self.to_markdown(probe))
        parts.append("\nThe paper's two claims, as measured here (paired bootstrap, ECG-Soup rule):")
        for _, c in self.claims.iterrows():
            parts.append(f"  {c['probe']:8s} {c['task']:6s} {c['claim']}: {c['difference']:+.3f} "
                         f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]  ({c['verdict']})")  # fmt: skip
        t = self.timings
        parts.append(f"\nWall time: embedding {t['embedding_s']:.0f} s, clinical features {t['features_s']:.0f} s, "
                     f"probes {t['probes_s']:.0f} s, bootstrap {t['bootstrap_s']:.0f} s.")  # fmt: skip
        return "\n".join(parts)


_PROBE_NAMES = {
    "logistic": "standardised logistic regression (one-vs-rest), C chosen on validation",
    "mlp": "ECG-Soup MLP head (bn-drop-lin), fixed settings, early stopping inside the training folds",
    "logistic-sklearn": "standardised logistic regression (one-vs-rest), C chosen on validation, fitted class "
                        "by class with scikit-learn (reference for the batched logistic probe)",
}


# --- the run ------------------------------------------------------------------------------


_EMBED_CHUNK = 256  # records per Dask task when the embedding is spread over a cluster


def _embed(data, rows, model, *, cache, batch_size, precision, device, verbose, distributed=False):
    """(layer-wise embeddings, the fitted embedder, seconds preprocessing, seconds embedding)."""
    start = time.perf_counter()
    pre = ECGPreprocessor(sampling_rate=data.sampling_rate, lead_names=data.lead_names, model=model)
    X = pre.fit_transform(data.X[rows])
    preprocessed = time.perf_counter()
    embedder = LayerwiseEmbedder(model=model, memory=cache, batch_size=batch_size, precision=precision,
                                 device=device, verbose=int(verbose))  # fmt: skip
    if not distributed:
        embeddings = embedder.fit_transform(X)
        return embeddings, embedder, preprocessed - start, time.perf_counter() - preprocessed
    # Each worker embeds chunks of records with a copy of the fitted embedder, without the cache
    # (a worker's disk need not be this one's).  A record's embedding does not depend on the
    # other records of its batch, so the numbers are those of one process.
    embedder.fit(X)
    worker = copy.copy(embedder).set_params(memory=None, verbose=0)
    chunks = np.array_split(np.arange(len(X)), max(1, -(-len(X) // _EMBED_CHUNK)))
    done = _run_jobs({i: (worker.transform_layers, (X[chunk],)) for i, chunk in enumerate(chunks)}, -1)
    embeddings = np.concatenate([done[i][0] for i in range(len(chunks))])
    return embeddings, embedder, preprocessed - start, time.perf_counter() - preprocessed


def _features(data, rows, cache: Path | None, n_jobs):
    import hashlib

    from ecgsoup._version import __version__
    from ecgsoup.features import ECGFeatures

    units = "mV" if data.units == "mV" else "normalized"
    key = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        # Keyed on the samples themselves and the settings (Python's hash() changes per process).
        digest = hashlib.sha256(np.ascontiguousarray(data.X[rows]).tobytes())
        digest.update(repr((__version__, data.sampling_rate, data.lead_names, units)).encode())
        key = cache / f"features-{len(rows)}-{digest.hexdigest()[:16]}.npz"
        if key.exists():
            with np.load(key, allow_pickle=False) as saved:
                if np.array_equal(saved["ecg_id"], data.ecg_id[rows]):
                    return saved["F"], [str(n) for n in saved["names"]]
    features = ECGFeatures(sampling_rate=data.sampling_rate, lead_names=data.lead_names, units=units, n_jobs=n_jobs)
    F = features.fit_transform(data.X[rows]).astype(np.float64)
    names = [str(n) for n in features.get_feature_names_out()]
    if key is not None:
        np.savez(key, F=F, names=np.array(names), ecg_id=data.ecg_id[rows])
    return F, names


def _hybrid(F: np.ndarray, Z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Clinical features beside an embedding, balanced as :func:`ecgsoup.hybrid.hybrid_features` does.

    Each block is imputed, standardised and scaled to a total variance of 1
    (:func:`ecgsoup.hybrid.balanced_columns`, statistics from the training rows
    only), so 14 features are not drowned by 192 embedding dimensions.
    """
    from ecgsoup.hybrid import balanced_columns

    stacked = np.hstack([F, Z])
    return balanced_columns([F.shape[1], Z.shape[1]]).fit(stacked[train]).transform(stacked)


def ptbxl(
    root,
    *,
    model="default",
    rate=100,
    tasks=tuple(PTBXL_TASKS),
    probes=("logistic", "mlp"),
    Cs=DEFAULT_CS,
    n_bootstrap=1000,
    max_records=None,
    out=None,
    scp_statements=None,
    features=True,
    random_baseline=True,
    random_state=0,
    batch_size=16,
    precision="float32",
    device="cpu",
    n_jobs=None,
    pma=True,
    cache=None,
    verbose=True,
    scheduler=None,
    workers=None,
) -> PTBXLResult:
    """Run the PTB-XL benchmark (see the module docstring for the protocol).

    Parameters
    ----------
    root : str or Path
        A PTB-XL download or the z-scored subset folder (see
        :func:`load_ptbxl_benchmark_data`).
    model : str or path, default="default"
        The encoder to probe: ``"default"``, an ecgsoup model folder or an
        ST-MEM checkpoint.  The random-weights baseline uses its architecture.
    rate : {100, 500}, default=100
        Which copy of a full download to read.
    tasks : sequence of str, default=all six
    probes : sequence of {"logistic", "mlp", "logistic-sklearn"}, default=("logistic", "mlp")
        ``"logistic-sklearn"`` is the logistic probe fitted class by class
        with scikit-learn, a reference for the batched ``"logistic"``.
    Cs : sequence of float
        Inverse regularisation strengths tried for the logistic probe.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the scored records for the intervals.
    max_records : int, optional
        Use a random subset of this many labelled records (same folds), for a
        quick check.  The results are then not comparable with a full run.
    out : str or Path, optional
        Folder for ``ptbxl.json``, ``ptbxl.md``, ``ptbxl.csv``, the figures
        and the embedding cache.
    features : bool, default=True
        Add the clinical-features and hybrid rows.
    random_baseline : bool, default=True
        Add the row of the same architecture with random weights (one more
        embedding pass).
    random_state : int, default=0
    batch_size, precision, device
        Passed to :class:`~ecgsoup.embedding.LayerwiseEmbedder`.
    n_jobs : int, optional
        Processes for the clinical features, the probe fits and the
        bootstrap (joblib; ``None`` follows an active
        :func:`joblib.parallel_config`, else one).
    pma : bool, default=True
        Add the PMA rows (a gate trained per split: the slowest fusion).
    cache : str or Path, optional
        Folder for the embedding and clinical-feature caches; default
        ``out/cache``.  Runs that share it embed a model, and compute the
        features, once.
    verbose : bool, default=True
        Print progress lines.
    scheduler : str, optional
        Address of a Dask scheduler: the embedding (in chunks of records)
        and the probe fits run on its workers; the results are the same as
        in one process.
    workers : int, optional
        Start a local Dask cluster of this many single-threaded worker
        processes instead (closed at the end).

    Returns
    -------
    result : PTBXLResult
    """
    from ecgsoup.distributed import connect

    settings = dict(model=model, rate=rate, tasks=tasks, probes=probes, Cs=Cs, n_bootstrap=n_bootstrap,
                    max_records=max_records, out=out, scp_statements=scp_statements, features=features,
                    random_baseline=random_baseline, random_state=random_state, batch_size=batch_size,
                    precision=precision, device=device, n_jobs=n_jobs, pma=pma, cache=cache, verbose=verbose)  # fmt: skip
    with connect(scheduler=scheduler, workers=workers) as client:
        if client is None:
            return _ptbxl(root, **settings, distributed=False)
        from joblib import parallel_config

        settings["n_jobs"] = -1 if n_jobs is None else n_jobs
        with parallel_config(backend="dask"):
            return _ptbxl(root, **settings, distributed=True)


def _ptbxl(
    root,
    *,
    model="default",
    rate=100,
    tasks=tuple(PTBXL_TASKS),
    probes=("logistic", "mlp"),
    Cs=DEFAULT_CS,
    n_bootstrap=1000,
    max_records=None,
    out=None,
    scp_statements=None,
    features=True,
    random_baseline=True,
    random_state=0,
    batch_size=16,
    precision="float32",
    device="cpu",
    n_jobs=None,
    pma=True,
    cache=None,
    verbose=True,
    distributed=False,
) -> PTBXLResult:
    """The run of :func:`ptbxl`; ``distributed``: the embedding goes to the Dask workers too."""
    unknown = set(tasks) - set(PTBXL_TASKS)
    if unknown:
        raise ValueError(f"Unknown task(s) {sorted(unknown)}; the six PTB-XL tasks are {list(PTBXL_TASKS)}.")
    bad = set(probes) - set(_PROBE_NAMES)
    if bad:
        raise ValueError(f"Unknown probe(s) {sorted(bad)}; use 'logistic' and/or 'mlp'.")
    say = print if verbose else (lambda *a, **k: None)
    started = time.perf_counter()
    data = load_ptbxl_benchmark_data(root, rate=rate, scp_statements=scp_statements)
    read_s = time.perf_counter() - started
    labelled_folds = sorted(set(data.fold[data.labelled].tolist()))
    if not set(TRAIN_FOLDS) & set(labelled_folds):
        raise ValueError(
            f"No record of folds 1-8 has labels (labelled folds: {labelled_folds}); the benchmark "
            "trains on folds 1-8. Check the strat_fold and scp_codes columns."
        )
    if TEST_FOLD in labelled_folds:
        scored_fold, selection = TEST_FOLD, "validation"
        selection_text = f"on validation fold {VALIDATION_FOLD}"
    elif VALIDATION_FOLD in labelled_folds:
        scored_fold, selection = VALIDATION_FOLD, "cv"
        selection_text = ("by two-fold cross-validation inside folds 1-8, folds 1-4 against 5-8 "
                          "(fold 10 has no labels, so fold 9 is scored)")
    else:
        raise ValueError(
            "Neither fold 9 nor fold 10 has labelled records: there is nothing to score. The benchmark "
            "scores fold 10, or fold 9 when fold 10's labels are withheld."
        )

    labelled = np.flatnonzero(data.labelled)
    if max_records is not None and max_records < len(labelled):
        rng = np.random.default_rng(random_state)
        labelled = np.sort(rng.choice(labelled, size=max_records, replace=False))
    use = np.zeros(len(data), bool)
    use[labelled] = True
    data.codes = [c if u else None for c, u in zip(data.codes, use)]
    say(f"{data.source}: {len(labelled)} labelled records used; scored fold {scored_fold}; choices {selection_text}")

    out_dir = Path(out) if out is not None else None
    cache = Path(cache) if cache is not None else out_dir / "cache" if out_dir is not None else None
    # Phases: read (data and signals), preprocess, embed (model and random twin), features, probes
    # (with their fit seconds per task and probe), bootstrap, write; embedding_s is the sum of
    # loading the weights, preprocessing and both embedding passes.
    timings = {"read_s": read_s}
    start = time.perf_counter()
    encoder = load_backbone(model)
    X_emb, embedder, timings["preprocess_s"], timings["embed_s"] = _embed(
        data, labelled, encoder, cache=cache, batch_size=batch_size, precision=precision, device=device,
        verbose=verbose, distributed=distributed)  # fmt: skip
    X_rand, timings["embed_random_s"] = None, 0.0
    if random_baseline:
        random_encoder = random_twin(encoder, seed=random_state)
        X_rand, embedder_rand, pre_s, timings["embed_random_s"] = _embed(
            data, labelled, random_encoder, cache=cache, batch_size=batch_size, precision=precision, device=device,
            verbose=verbose, distributed=distributed)  # fmt: skip
        timings["preprocess_s"] += pre_s
    timings["embedding_s"] = time.perf_counter() - start
    n_layers = embedder.n_layers_
    spec = embedder.layer_spec_
    position = np.full(len(data), -1)
    position[labelled] = np.arange(len(labelled))
    say(f"embedded {len(labelled)} records x {1 + random_baseline} models in {timings['embedding_s']:.0f} s")

    start = time.perf_counter()
    F = None
    if features:
        F, feature_names = _features(data, labelled, cache, n_jobs)
        say(f"clinical features ({F.shape[1]} columns) in {time.perf_counter() - start:.0f} s")
    timings["features_s"] = time.perf_counter() - start

    def layer(X, index, spec):
        return LayerSelector(layers=index, layer_spec=spec).fit_transform(X)

    layers = {f"layer {i}": layer(X_emb, i, spec) for i in range(n_layers)}
    # The random twin's layer is chosen on validation among every fourth layer (0, 4, 8, 12 for
    # a 12-block model): its curve is flat and far below, and this keeps the run to minutes.
    random_layers = (None if X_rand is None else
                     {f"layer {i}": layer(X_rand, i, embedder_rand.layer_spec_) for i in sorted({*range(0, n_layers, 4), n_layers - 1})})  # fmt: skip
    # PPA and PMA average one representation space; a CNN's stages are several, and
    # every layer, balanced on the training records, takes their place.
    one_stream = len({(layer.width, layer.stream) for layer in spec.layers[1:]}) == 1
    ppa = PPA(layer_spec=spec).fit_transform(X_emb) if one_stream else None

    task_rows, score_store, task_info, tasks_built, runs = [], {}, [], {}, {}
    start_probes = time.perf_counter()
    for task_name in tasks:
        task = _build_task(data, task_name, scored_fold, selection)
        pos = position[task.rows]
        task_info.append({"task": task_name, "description": PTBXL_TASK_NAMES[task_name],
                          "classes_defined": task.n_defined, "classes_used": len(task.classes),
                          "n_train": len(task.train), "n_scored": len(task.scored),
                          "classes_absent_from_scored_fold": int(((task.Y[task.scored].sum(0) == 0)
                                                                  | (task.Y[task.scored].sum(0) == len(task.scored))).sum())})  # fmt: skip
        say(f"task {task_name}: {len(task.classes)} classes, {len(task.train)} train / {len(task.scored)} scored records")
        for k, probe in enumerate(probes):
            # The first probe chooses the random twin's layer; the others reuse its choice.
            runs[(task_name, probe)] = _ProbeRun(_PROBES[probe](task, task.Y, pos, Cs, random_state), task, pos,
                                                 layers, random_layers, ppa, X_emb, F, spec, random_state, pma,
                                                 chooses_random=k == 0)  # fmt: skip
        tasks_built[task_name] = task
    all_cells, seconds = _run_probes(runs, n_jobs)
    timings["probes"] = {}
    for (task_name, probe), cells in all_cells.items():
        for rep, (scores, chosen, value, kind) in cells.items():
            score_store[(probe, task_name, rep)] = scores
            task_rows.append({"probe": probe, "task": task_name, "representation": rep, "chosen": chosen,
                              "kind": kind, "validation": value})  # fmt: skip
        timings["probes"].setdefault(task_name, {})[probe] = seconds[(task_name, probe)]
        say(f"task {task_name}, {probe} probe: {len(cells)} representations, {seconds[(task_name, probe)]:.0f} s of fits")
    timings["probes_s"] = time.perf_counter() - start_probes

    start = time.perf_counter()
    table, claims = _bootstrap(task_rows, score_store, tasks_built, n_layers, n_bootstrap, random_state, n_jobs)
    timings["bootstrap_s"] = time.perf_counter() - start
    # Titled with the model that ran (its card name and weights hash), not the option's spelling:
    # "default" or "random" alone would not say which weights the numbers belong to.
    from ecgsoup.backbones.stmem.weights import model_fingerprint

    model_label = f"{spec.model_name} (sha256 {model_fingerprint(embedder.model_)[:12]})"
    result = PTBXLResult(table, claims, pd.DataFrame(task_info), scored_fold, selection_text,
                         model_label, data.source, timings, n_bootstrap=n_bootstrap)  # fmt: skip
    start = time.perf_counter()
    if out_dir is not None:
        write_ptbxl_results(result, out_dir)
    timings["write_s"] = time.perf_counter() - start
    if out_dir is not None:  # the JSON already written lacks only its own writing time
        _write_json(result, out_dir, "ptbxl")
    return result


def _inner_value(Y, task, predict) -> float:
    """Mean validation macro AUC (ECG-Soup rule) of ``predict(train, validation)`` over the inner splits."""
    return float(np.mean([_macro(class_aucs(Y[va], predict(tr, va)))[0] for tr, va in task.inner]))


class _LogisticProbe:
    """Standardised one-vs-rest logistic regression; C chosen on the inner validation.

    Each training split is imputed and standardised once, and every class and
    every ``C`` is fitted from it in one batched solve (:func:`_logistic_path`).
    """

    name = "logistic"

    def __init__(self, task, Y, pos, Cs, seed):
        self.task, self.Y, self.pos, self.Cs = task, Y, pos, list(Cs)

    def _path_scores(self, Z, tr, te, Cs):
        """Scores on ``te`` of the fits on ``tr``, one array per C of ``Cs``."""
        scaler = _standardiser().fit(Z[self.pos[tr]])
        fits = _logistic_path(scaler.transform(Z[self.pos[tr]]), self.Y[tr], Cs)
        X_te = scaler.transform(Z[self.pos[te]])
        return [_logistic_scores(X_te, fit) for fit in fits]

    def _choose(self, per_split, Z_final):
        values = np.zeros(len(self.Cs))
        for tr, va, Z in per_split:
            for i, S in enumerate(self._path_scores(Z, tr, va, self.Cs)):
                values[i] += _macro(class_aucs(self.Y[va], S))[0] / len(per_split)
        best = int(np.argmax(values))  # the first of equal values, as max() over the C list
        C = self.Cs[best]
        S = self._path_scores(Z_final, self.task.train, self.task.scored, [C])[0]
        return S, f"C={C:g}", float(values[best])

    def run(self, Z):
        """(scores on the scored fold, choice text, validation value)."""
        return self._choose([(tr, va, Z) for tr, va in self.task.inner], Z)

    def run_pma(self, X_emb, spec, seed):
        """PMA then the probe; the gate is refitted on the training records of every split."""
        def fused(tr):
            return PMA(layer_spec=spec, random_state=seed).fit(X_emb[self.pos[tr]], self.Y[tr]).transform(X_emb)

        per_split = [(tr, va, fused(tr)) for tr, va in self.task.inner]
        return self._choose(per_split, fused(self.task.train))


class _SklearnLogisticProbe:
    """The logistic probe fitted class by class and C by C with scikit-learn (the reference).

    Same model and choices as ``"logistic"``; kept to check the batched solve against.
    """

    name = "logistic-sklearn"

    def __init__(self, task, Y, pos, Cs, seed):
        self.task, self.Y, self.pos, self.Cs = task, Y, pos, Cs

    def _fit_predict(self, Z, C, tr, te):
        model = _logistic(C).fit(Z[self.pos[tr]], self.Y[tr])
        return _scores(model, Z[self.pos[te]])

    def run(self, Z):
        """(scores on the scored fold, choice text, validation value)."""
        values = {C: _inner_value(self.Y, self.task, lambda tr, va, C=C: self._fit_predict(Z, C, tr, va))
                  for C in self.Cs}  # fmt: skip
        best = max(values, key=values.get)
        return self._fit_predict(Z, best, self.task.train, self.task.scored), f"C={best:g}", values[best]

    def run_pma(self, X_emb, spec, seed):
        """PMA then the probe; the gate is refitted on the training records of every split."""
        def fused(tr):
            return PMA(layer_spec=spec, random_state=seed).fit(X_emb[self.pos[tr]], self.Y[tr]).transform(X_emb)

        per_split = [(tr, va, fused(tr)) for tr, va in self.task.inner]
        values = {}
        for C in self.Cs:
            values[C] = float(np.mean([_macro(class_aucs(self.Y[va], self._fit_predict(Z, C, tr, va)))[0]
                                       for tr, va, Z in per_split]))  # fmt: skip
        best = max(values, key=values.get)
        Z = fused(self.task.train)
        return self._fit_predict(Z, best, self.task.train, self.task.scored), f"C={best:g}", values[best]


class _MLPProbe:
    """The ECG-Soup MLP head with fixed settings; chosen by its early-stopping hold-out loss.

    The hold-out is 10 % of the training folds, so nothing is chosen on the scored fold.
    """

    name = "mlp"

    def __init__(self, task, Y, pos, Cs, seed):
        self.task, self.Y, self.pos, self.seed = task, Y, pos, seed

    def run(self, Z):
        train, scored = self.task.train, self.task.scored
        scaler = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        Zs = scaler.fit(Z[self.pos[train]]).transform(Z)
        model = _mlp_head(self.seed, len(train)).fit(Zs[self.pos[train]], self.Y[train])
        value = -min(model.validation_loss_curve_)
        return _scores(model, Zs[self.pos[scored]]), "", value

    def run_pma(self, X_emb, spec, seed):
        train, scored = self.task.train, self.task.scored
        model = PMAClassifier(head="mlp", layer_spec=spec, max_iter=100, early_stopping=True,
                              validation_fraction=_hold_out(len(train)), random_state=seed)  # fmt: skip
        model.fit(X_emb[self.pos[train]], self.Y[train])
        return _scores(model, X_emb[self.pos[scored]]), "", -min(model.validation_loss_curve_)


_PROBES = {"logistic": _LogisticProbe, "logistic-sklearn": _SklearnLogisticProbe, "mlp": _MLPProbe}


_QUIET = (ConvergenceWarning, UndefinedMetricWarning, UserWarning, RuntimeWarning)


def _timed_job(function, *args):
    """One probe fit with one BLAS thread (the jobs themselves run in parallel), and its seconds."""
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    torch = sys.modules.get("torch")
    # One torch thread too, wherever the job runs, so that a fit gives the same numbers in this
    # process and on a Dask worker (reductions over more threads add in another order).
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(1)
        with warnings.catch_warnings(), threadpool_limits(1):
            for category in _QUIET:
                warnings.simplefilter("ignore", category)
            result = function(*args)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return result, time.perf_counter() - start


def _run_jobs(jobs: dict, n_jobs) -> dict:
    """``{key: (function, args)}`` -> ``{key: (result, seconds)}``, through joblib.

    ``n_jobs=None`` follows the active :func:`joblib.parallel_config` (one
    process unless one is set, the Dask workers under the Dask backend).
    """
    from joblib import Parallel, delayed

    if not jobs:
        return {}
    results = Parallel(n_jobs=n_jobs)(delayed(_timed_job)(function, *args) for function, args in jobs.values())
    return dict(zip(jobs, results))


@dataclass
class _ProbeRun:
    """One probe on one task: its fits as independent jobs, then the rows they make.

    The first round fits every layer, the fusions, the random twin's layers
    and the clinical features; the second the hybrid (it needs the chosen
    layer) and, for a probe that reuses another probe's choice of random
    layer, that layer.
    """

    probe: object
    task: _Task
    pos: np.ndarray
    layers: dict
    random_layers: dict | None
    ppa: np.ndarray | None
    X_emb: np.ndarray
    F: np.ndarray | None
    spec: object
    seed: int
    pma: bool
    chooses_random: bool

    def first_jobs(self) -> dict:
        run = self.probe.run
        jobs = {name: (run, (Z,)) for name, Z in self.layers.items()}
        if self.ppa is not None:
            jobs["PPA"] = (run, (self.ppa,))
            if self.pma:
                jobs["PMA (trained gate)"] = (self.probe.run_pma, (self.X_emb, self.spec, self.seed))
        else:
            balanced = LayerSelector(layers="all", balance=True, layer_spec=self.spec).fit(
                self.X_emb[self.pos[self.task.train]])
            jobs["all layers (balanced)"] = (run, (balanced.transform(self.X_emb),))
        if self.random_layers is not None and self.chooses_random:
            jobs.update({("random", name): (run, (Z,)) for name, Z in self.random_layers.items()})
        if self.F is not None:
            jobs["clinical features"] = (run, (self.F,))
        return jobs

    def best_layer(self, done) -> str:
        values = {name: done[name][0][2] for name in self.layers}
        return max(values, key=values.get)

    def random_choice(self, done) -> str:
        values = {name: done[("random", name)][0][2] for name in self.random_layers}
        return max(values, key=values.get)

    def second_jobs(self, done, random_choice) -> dict:
        jobs = {}
        if self.random_layers is not None and not self.chooses_random:  # reuse the first probe's choice
            jobs[("random", random_choice)] = (self.probe.run, (self.random_layers[random_choice],))
        if self.F is not None:
            hybrid = _hybrid(self.F, self.layers[self.best_layer(done)], self.pos[self.task.train])
            jobs["hybrid"] = (self.probe.run, (hybrid,))
        return jobs

    def cells(self, done, random_choice) -> dict:
        """``{representation: (S, choice, value, kind)}`` in the order of the table."""
        cells = {name: (*done[name][0], "layer") for name in self.layers}
        best_layer = self.best_layer(done)
        S, choice, value, _ = cells[best_layer]
        cells["best layer (chosen on validation)"] = (S, ", ".join(filter(None, [best_layer, choice])), value, "chosen")
        fusions = [n for n in ("PPA", "PMA (trained gate)", "all layers (balanced)") if n in done]
        for name in fusions:
            cells[name] = (*done[name][0], "fusion")
        best_fusion = max(fusions, key=lambda n: cells[n][2])
        S, choice, value, _ = cells[best_fusion]
        cells["best fusion (chosen on validation)"] = (S, ", ".join(filter(None, [best_fusion, choice])), value, "chosen")
        if self.random_layers is not None:
            S, choice, value = done[("random", random_choice)][0]
            cells["random weights (layer chosen on validation)"] = (
                S, ", ".join(filter(None, [random_choice, choice])), value, "baseline")
        if self.F is not None:
            cells["clinical features"] = (*done["clinical features"][0], "baseline")
            S, choice, value = done["hybrid"][0]
            cells["clinical features + best layer"] = (S, ", ".join(filter(None, [best_layer, choice])), value, "hybrid")
        return cells


def _run_probes(runs: dict, n_jobs) -> tuple[dict, dict]:
    """Every ``_ProbeRun`` of ``{(task, probe): run}`` in two parallel rounds.

    Returns ``{(task, probe): cells}`` and ``{(task, probe): seconds}``, the
    seconds summed over that probe's fits (which may have run side by side).
    """
    first = _run_jobs({(key, job): spec for key, run in runs.items() for job, spec in run.first_jobs().items()},
                      n_jobs)  # fmt: skip
    done = {key: {job: first[(k, job)] for (k, job) in first if k == key} for key in runs}
    choices = {}
    for (task, probe), run in runs.items():
        if run.random_layers is not None and run.chooses_random:
            choices[task] = run.random_choice(done[(task, probe)])
    second = _run_jobs({(key, job): spec for key, run in runs.items()
                        for job, spec in run.second_jobs(done[key], choices.get(key[0])).items()}, n_jobs)  # fmt: skip
    for (key, job), value in second.items():
        done[key][job] = value
    cells = {key: run.cells(done[key], choices.get(key[0])) for key, run in runs.items()}
    seconds = {key: float(sum(t for _, t in done[key].values())) for key in runs}
    return cells, seconds


# --- intervals and the two claims ---------------------------------------------------------


def _row_stats(Y, S, counts, defined):
    """(point estimates, resampled values), each as ``_macro`` gives them."""
    return _macro(class_aucs(Y, S)), _macro(resample_class_aucs(Y, S, counts), present=defined)


def _bootstrap(task_rows, score_store, tasks_built, n_layers, n_bootstrap, seed, n_jobs=None):
    """Point estimates and percentile intervals; the same resamples for every row of a task (paired)."""
    rng = np.random.default_rng(seed)
    rows, claims = [], []
    for task_name, task in tasks_built.items():
        Y = task.Y[task.scored]
        draws = rng.integers(0, len(Y), size=(n_bootstrap, len(Y)))
        counts = _draw_counts(draws, len(Y))
        defined = ~np.isnan(class_aucs(Y, np.zeros_like(Y, dtype=float)))
        keys = [(r["probe"], r["representation"]) for r in task_rows if r["task"] == task_name]
        # A "chosen" row shares its scores with the row it chose: each score array is resampled once.
        unique = {id(score_store[(probe, task_name, rep)]): score_store[(probe, task_name, rep)] for probe, rep in keys}
        done = _run_jobs({i: (_row_stats, (Y, S, counts, defined)) for i, S in unique.items()}, n_jobs)
        stats = {key: done[id(score_store[(key[0], task_name, key[1])])][0] for key in keys}
        absent = int((~defined).sum())
        for row in (r for r in task_rows if r["task"] == task_name):
            (rule, present), (boot_rule, boot_present) = stats[(row["probe"], row["representation"])]
            rows.append({**row, "auc": rule, "ci_low": np.nanpercentile(boot_rule, 2.5),
                         "ci_high": np.nanpercentile(boot_rule, 97.5), "auc_present": present,
                         "ci_present_low": np.nanpercentile(boot_present, 2.5),
                         "ci_present_high": np.nanpercentile(boot_present, 97.5),
                         "classes": len(task.classes), "classes_absent": absent,
                         "n_train": len(task.train), "n_scored": len(task.scored)})  # fmt: skip
        middle, last = f"layer {(n_layers - 1) // 2}", f"layer {n_layers - 1}"
        for probe in dict.fromkeys(r["probe"] for r in task_rows if r["task"] == task_name):
            pairs = [("best fusion - best single layer", "best fusion (chosen on validation)",
                      "best layer (chosen on validation)"),
                     (f"middle layer ({middle}) - last layer ({last})", middle, last),
                     (f"best layer - last layer ({last})", "best layer (chosen on validation)", last)]  # fmt: skip
            for claim, a, b in pairs:
                (pa, _), (ba, _) = stats[(probe, a)]
                (pb, _), (bb, _) = stats[(probe, b)]
                diff, boot = pa - pb, ba - bb
                # A resample that loses every positive of a class has no AUC for it: left out, as in the rows.
                low, high = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
                verdict = "holds" if low > 0 else "reversed" if high < 0 else "not resolved (interval spans 0)"
                claims.append({"probe": probe, "task": task_name, "claim": claim, "difference": diff,
                               "ci_low": low, "ci_high": high, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(claims)


# --- outputs ------------------------------------------------------------------------------


def plot_ptbxl_task(result: PTBXLResult, task: str, path=None):
    """One task's figure: a panel per probe with the layer curve, its interval band and the other rows.

    Returns the matplotlib ``Figure`` (made without pyplot, so it works headless).
    """
    from matplotlib.figure import Figure

    table = result.table[result.table["task"] == task]
    probes = list(dict.fromkeys(table["probe"]))
    figure = Figure(figsize=(6.4 * len(probes), 5.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(probes), sharey=True))
    styles = {
        "best fusion (chosen on validation)": None,
        "PPA": ("tab:blue", "--"),
        "PMA (trained gate)": ("tab:orange", "--"),
        "random weights (layer chosen on validation)": ("tab:gray", ":"),
        "clinical features": ("tab:green", "-."),
        "clinical features + best layer": ("tab:purple", "-."),
    }
    low = min(0.45, float(table["ci_low"].min()) - 0.02)
    for ax, probe in zip(axes, probes):
        rows = table[table["probe"] == probe]
        layers = rows[rows["kind"] == "layer"]
        x = [int(name.split()[1]) for name in layers["representation"]]
        ax.fill_between(x, layers["ci_low"], layers["ci_high"], color="black", alpha=0.12,
                        label="single layer: 95 % bootstrap interval")  # fmt: skip
        ax.plot(x, layers["auc"], "o-", color="black", label="single layer")
        chosen = rows[rows["representation"] == "best layer (chosen on validation)"].iloc[0]
        ax.plot([int(chosen["chosen"].split(",")[0].split()[1])], [chosen["auc"]], "*", color="tab:red",
                markersize=14, label=f"layer chosen on validation ({chosen['auc']:.3f})")  # fmt: skip
        for name, style in styles.items():
            match = rows[rows["representation"] == name]
            if style is None or match.empty:
                continue
            value = float(match.iloc[0]["auc"])
            ax.axhline(value, color=style[0], linestyle=style[1], label=f"{name} ({value:.3f})")
        ax.axhline(0.5, color="tab:red", linewidth=0.8, alpha=0.6, label="chance (0.5)")
        ax.set_xticks(x)
        ax.set_xlabel("layer (0 = token embedding)")
        ax.set_ylabel(f"macro ROC AUC (fold {result.scored_fold})")
        ax.set_ylim(low, 1.0)
        ax.set_title(f"{PTBXL_TASK_NAMES[task]} ({int(rows['classes'].iloc[0])} classes): {probe} probe", fontsize=10)
    # Beside the panels, never over a curve; the values differ per probe, so one legend per panel, below it.
    for ax in axes:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncols=2, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def plot_ptbxl_summary(result: PTBXLResult, path=None, probe: str = "logistic"):
    """Six tasks side by side: the chosen layer, PPA and the baselines, each with its 95 % interval."""
    from matplotlib.figure import Figure

    sub = result.table[result.table["probe"] == probe]
    tasks = [t for t, _ in result._task_sizes()]
    reps = [rep for rep in SUMMARY_ROWS if rep in set(sub["representation"])]
    colours = ["black", "tab:blue", "tab:gray", "tab:green", "tab:purple"]
    figure = Figure(figsize=(9.0, 4.6), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(len(reps), 1)
    for k, rep in enumerate(reps):
        x, y, low, high = [], [], [], []
        for i, task in enumerate(tasks):
            row = sub[(sub["representation"] == rep) & (sub["task"] == task)]
            if row.empty:
                continue
            r = row.iloc[0]
            x.append(i - 0.4 + width * (k + 0.5))
            y.append(r["auc"])
            low.append(r["auc"] - r["ci_low"])
            high.append(r["ci_high"] - r["auc"])
        ax.errorbar(x, y, yerr=[low, high], fmt="o", color=colours[k % len(colours)], capsize=2,
                    label=SUMMARY_ROWS[rep])  # fmt: skip
    ax.axhline(0.5, color="tab:red", linewidth=0.8, alpha=0.6, label="chance (0.5)")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{t}\n({n} classes)" for t, n in result._task_sizes()])
    ax.set_ylabel(f"macro ROC AUC, fold {result.scored_fold} (95 % interval)")
    ax.set_ylim(min(0.45, float(sub["ci_low"].min()) - 0.02), 1.0)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def ptbxl_result_from_json(payload: dict) -> PTBXLResult:
    """A :class:`PTBXLResult` from the JSON :func:`write_ptbxl_results` (or the benchmark script) wrote.

    Redraws figures and tables from saved results without running the benchmark again.
    """
    return PTBXLResult(pd.DataFrame(payload["table"]), pd.DataFrame(payload["claims"]),
                       pd.DataFrame(payload["tasks"]), int(payload["scored_fold"]), payload["selection"],
                       str(payload["model"]), payload.get("source", "PTB-XL"), payload.get("timings_s", {}),
                       n_bootstrap=int(payload.get("n_bootstrap", 1000)))  # fmt: skip


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def read_ptbxl_results(path) -> PTBXLResult:
    """The :class:`PTBXLResult` that :func:`write_ptbxl_results` saved as ``<name>.json``."""
    return ptbxl_result_from_json(json.loads(Path(path).read_text()))


def _write_json(result: PTBXLResult, out: Path, name: str) -> None:
    payload = {
        "model": result.model, "source": result.source, "scored_fold": result.scored_fold,
        "warnings": result.warnings(),
        "selection": result.selection, "n_bootstrap": result.n_bootstrap, "timings_s": result.timings,
        "tasks": result.tasks.to_dict("records"),
        "table": [{k: _jsonable(v) for k, v in row.items()} for row in result.table.to_dict("records")],
        "claims": [{k: _jsonable(v) for k, v in row.items()} for row in result.claims.to_dict("records")],
    }  # fmt: skip
    atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=2, default=_jsonable) + "\n")


def write_ptbxl_results(result: PTBXLResult, out, *, name="ptbxl", figures=True) -> list[Path]:
    """Write ``<name>.json``, ``<name>.md``, ``<name>.csv`` and one figure per task into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if figures:
        result.figures = []
        for task in dict.fromkeys(result.table["task"]):
            path = out / f"{name}_{task}.png"
            plot_ptbxl_task(result, task, path)
            result.figures.append(path)
        paths += result.figures
    result.table.to_csv(out / f"{name}.csv", index=False)
    _write_json(result, out, name)
    (out / f"{name}.md").write_text(result.report_markdown())
    return [out / f"{name}.json", out / f"{name}.md", out / f"{name}.csv", *paths]
