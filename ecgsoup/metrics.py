"""ROC AUC per class and the macro rule: the one definition every table of the package uses.

Per-class AUCs come from the rank formula (ties averaged), vectorised over any
leading axes (bootstrap resamples), and are NaN where a class lacks positives or
negatives.  The macro rule is the ECG-Soup authors': such a class counts 0.5.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils.multiclass import type_of_target

__all__ = ["class_aucs", "draw_counts", "macro_auc", "macro_rule", "resample_class_aucs"]


def macro_auc(y_true, y_score, *, labels=None) -> float:
    """Macro ROC AUC, counting classes without both labels in the split as 0.5.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,) or (n_samples, n_classes)
        Binary or multiclass labels, or a 0/1 indicator matrix (multi-label).
    y_score : array-like of shape (n_samples,) or (n_samples, n_classes)
        Scores: for binary ``y_true`` the positive-class score (1-D) or both
        columns of ``predict_proba``; otherwise one column per class, in the
        order of ``labels`` (multiclass) or of the indicator columns.
    labels : array-like, default=None
        Multiclass only: the class of each ``y_score`` column (e.g. a fitted
        classifier's ``classes_``).  Needed when some class is missing from
        ``y_true`` in this split; defaults to the sorted labels of ``y_true``.
        For binary ``y_true`` it names ``[negative, positive]``.

    Returns
    -------
    score : float
        Unweighted mean over classes (one-vs-rest for multiclass; a binary
        task has one class, the positive one).  A class whose ``y_true``
        column is all 0 or all 1 contributes 0.5 and is reported with an
        ``UndefinedMetricWarning``, as the authors' code does (``macro_nans``).

    Examples
    --------
    >>> from ecgsoup.metrics import macro_auc
    >>> macro_auc([[1, 0], [0, 0], [1, 0]], [[0.9, 0.2], [0.1, 0.3], [0.8, 0.1]])
    0.75
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=float)
    if y_true.shape[0] != y_score.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but y_score has {y_score.shape[0]}."
        )
    kind = type_of_target(y_true, input_name="y_true")
    if kind == "multilabel-indicator" or (y_true.ndim == 2 and y_true.shape[1] > 1):
        truth = y_true.astype(float)
        if y_score.shape != truth.shape:
            raise ValueError(
                f"Multi-label y_true has shape {truth.shape} but y_score has {y_score.shape}; "
                "pass one score column per label."
            )
    else:
        y_true = y_true.ravel()
        if labels is None:
            labels = np.unique(y_true)
        labels = np.asarray(labels)
        if y_score.ndim == 1 or (y_score.ndim == 2 and y_score.shape[1] == 1):
            # A single score column is the positive class of a binary task.
            if len(labels) > 2:
                raise ValueError(
                    f"y_true has {len(labels)} classes but y_score has one column; pass "
                    "predict_proba / decision_function with one column per class."
                )
            positive = labels[-1] if len(labels) else 1
            truth = (y_true == positive).astype(float)[:, None]
            y_score = y_score.reshape(-1, 1)
        else:
            if y_score.shape[1] != len(labels):
                raise ValueError(
                    f"y_score has {y_score.shape[1]} columns but there are {len(labels)} labels "
                    f"({list(labels)[:10]}); pass labels=<the classifier's classes_> when a "
                    "class is missing from y_true in this split."
                )
            unknown = np.setdiff1d(np.unique(y_true), labels)
            if unknown.size:
                raise ValueError(f"y_true holds labels {list(unknown)} that are not in labels.")
            truth = (y_true[:, None] == labels[None, :]).astype(float)
            if len(labels) == 2:  # binary with both columns: score the positive class only
                truth, y_score = truth[:, 1:], y_score[:, 1:]
    if truth.shape[1] == 0:
        raise ValueError("There are no classes to score.")
    aucs = class_aucs(truth, y_score)
    undefined = int(np.isnan(aucs).sum())
    if undefined:
        warnings.warn(
            f"{undefined} of {len(aucs)} classes have only one label value in y_true; "
            "their AUC is undefined and counts as 0.5, as the ECG-Soup authors' code does.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return float(np.where(np.isnan(aucs), 0.5, aucs).mean())


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


def draw_counts(draws, n) -> np.ndarray:
    """``counts[b, i]``: how often record ``i`` occurs in resample ``draws[b]``."""
    flat = (np.asarray(draws) + n * np.arange(len(draws))[:, None]).ravel()
    return np.bincount(flat, minlength=len(draws) * n).reshape(len(draws), n)


def macro_rule(aucs: np.ndarray, present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
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
