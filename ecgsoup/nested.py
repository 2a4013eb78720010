"""Nested cross-validation of the layer-wise probe: a verdict chosen without looking at its test records.

:func:`nested_probe` fits the probe on every representation (each layer, PPA,
PMA, ...) in each outer training fold, as :func:`ecgsoup.evaluate.layer_probe`
does, and also chooses one representation per outer fold by inner
cross-validation *inside that training fold*.  The chosen representation's
out-of-fold scores, pooled over the outer folds, give the headline metric
with a percentile bootstrap 95 % interval over records.  The best per-layer
row, by contrast, is chosen on the very folds that score it, so it is
optimistic.

For a binary target it also reports sensitivity and specificity at the
Youden threshold chosen on the inner out-of-fold scores of each training
fold, and at thresholds you give; for a continuous target (regression) R²
and the mean absolute error.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.impute import SimpleImputer
from sklearn.metrics import get_scorer, roc_curve
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline

from ecgsoup.metrics import class_aucs, macro_rule

__all__ = [
    "REGRESSION_MIN_VALUES",
    "NestedProbeResult",
    "bootstrap_interval",
    "describe_probe",
    "nested_probe",
    "target_kind",
]

#: A numeric target with more distinct values than this is continuous (regression), never multiclass.
REGRESSION_MIN_VALUES = 20

_METRIC_NAMES = {
    "binary": "ROC AUC",
    "multiclass": "macro ROC AUC (one-vs-rest; a class absent from the scored records counts 0.5)",
    "multilabel": "macro ROC AUC (a label absent from the scored records counts 0.5)",
    "regression": "R²",
}


def target_kind(y) -> str:
    """``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.

    A numeric 1-D target with more than ``REGRESSION_MIN_VALUES`` (20)
    distinct values (ages, QTc, ejection fraction) is a regression target,
    never a many-class one; so is any non-integer numeric target.
    """
    from sklearn.utils.multiclass import type_of_target

    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return "multilabel"
    y = y.ravel()
    if y.dtype.kind in "fiu" and y.dtype.kind != "b":
        values = np.unique(y[~np.isnan(y)]) if y.dtype.kind == "f" else np.unique(y)
        if len(values) > REGRESSION_MIN_VALUES or (
            y.dtype.kind == "f" and not np.all(np.equal(np.mod(values, 1), 0))
        ):
            return "regression"
    kind = type_of_target(y, input_name="y")
    return "binary" if kind == "binary" else "multiclass"


def describe_probe(estimator=None, task="binary") -> str:
    """One sentence naming the probe and its settings (for reports and methods sections)."""
    from ecgsoup.evaluate import default_probe

    probe = default_probe(task) if estimator is None else estimator
    if estimator is None:
        if task == "regression":
            return ("features standardised (mean and variance of the training fold), then ridge regression "
                    "with its penalty chosen by efficient leave-one-out inside the training fold among "
                    "alpha = 10^-2 ... 10^4 (scikit-learn RidgeCV)")  # fmt: skip
        per_label = " (one per label, one-vs-rest)" if task == "multilabel" else ""
        return ("features standardised (mean and variance of the training fold), then L2-regularised "
                f"logistic regression{per_label} with C = 1, lbfgs solver, up to 2,000 iterations "
                "(scikit-learn)")  # fmt: skip
    return repr(probe)


# --- scores and metrics -------------------------------------------------------------------


def _oriented_scores(estimator, X, task, classes):
    """Out-of-fold scores in a fixed layout: 1-D for binary and regression, one column per class otherwise."""
    from ecgsoup.evaluate import decision_scores

    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=float).ravel()
    scores = decision_scores(estimator, X)
    if task == "multilabel":
        return scores
    fitted = list(estimator.classes_)
    if scores.ndim == 1:  # decision_function of a binary classifier: the score of classes_[1]
        scores = np.column_stack([-scores, scores])
    full = np.zeros((scores.shape[0], len(classes)))
    for column, label in enumerate(fitted):
        full[:, classes.index(label)] = scores[:, column]
    return full[:, -1] if task == "binary" else full


def truth_matrix(y, task, classes):
    """Indicator matrix (n, n_classes) of the targets; binary: the positive class only."""
    if task == "multilabel":
        return np.asarray(y, dtype=float)
    if task == "binary":
        return (np.asarray(y) == classes[-1]).astype(float)[:, None]
    return (np.asarray(y)[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(float)


def _as_columns(scores):
    scores = np.asarray(scores, dtype=float)
    return scores[:, None] if scores.ndim == 1 else scores


def _point(task, Y, S, y=None):
    """The headline metric of pooled scores: macro AUC (undefined classes 0.5) or R²."""
    if task == "regression":
        y = np.asarray(y, dtype=float)
        return float(1 - np.sum((y - S) ** 2) / np.sum((y - y.mean()) ** 2))
    return float(macro_rule(class_aucs(Y, _as_columns(S)))[0])


def _chunks(n_bootstrap, n_cells):
    """Resample blocks small enough to keep a block under about 20 million numbers."""
    size = max(1, int(2e7 // max(n_cells, 1)))
    return [(start, min(start + size, n_bootstrap)) for start in range(0, n_bootstrap, size)]


def bootstrap_interval(statistic, n, *, n_bootstrap=1000, random_state=0, confidence=0.95):
    """Percentile bootstrap interval of ``statistic`` over ``n`` records.

    Parameters
    ----------
    statistic : callable
        ``statistic(draws)`` takes an integer array ``(n_resamples, n)`` of
        record indices (each row one resample with replacement) and returns
        one value per row; it is called on blocks of rows, so it is
        vectorised over resamples.
    n : int
        Number of records.
    n_bootstrap : int, default=1000
        Resamples.
    random_state : int, default=0
        Seeds the resamples: the same seed draws the same resamples, so two
        statistics bootstrapped with it are paired.
    confidence : float, default=0.95

    Returns
    -------
    (low, high) : tuple of float
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles;
        resamples where the statistic is undefined (NaN) are left out.
    """
    values = _bootstrap_values(statistic, n, n_bootstrap, random_state)
    tail = (1 - confidence) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap_values(statistic, n, n_bootstrap, random_state, cells=1):
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, n, size=(n_bootstrap, n))
    out = []
    for start, stop in _chunks(n_bootstrap, n * cells):
        out.append(np.asarray(statistic(draws[start:stop]), dtype=float))
    return np.concatenate(out)


def _auc_statistic(Y, S):
    """Vectorised macro AUC of resamples: a class lost by a resample is left out of that resample only.

    A class undefined on all the scored records counts 0.5 (as in the point
    estimate); one that a resample happens to lose would otherwise drag every
    resample towards 0.5 and put the interval below the point estimate.
    """
    S = _as_columns(S)
    defined = ~np.isnan(class_aucs(Y, np.zeros_like(Y)))
    n_all, n_absent = Y.shape[1], int((~defined).sum())

    def statistic(draws):
        aucs = class_aucs(Y[draws][..., defined], S[draws][..., defined])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kept = np.nanmean(aucs, axis=-1) if defined.any() else np.full(len(draws), np.nan)
        return (kept * (n_all - n_absent) + 0.5 * n_absent) / n_all

    return statistic


def _r2_statistic(y, p):
    def statistic(draws):
        yb, pb = y[draws], p[draws]
        total = ((yb - yb.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1 - ((yb - pb) ** 2).sum(axis=1) / total

    return statistic


def _rate_statistic(hit, among):
    """Fraction of ``among`` records that are ``hit`` (sensitivity: positives called positive)."""

    def statistic(draws):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (hit[draws] & among[draws]).sum(axis=1) / among[draws].sum(axis=1)

    return statistic


def _youden(y01, scores) -> float:
    """The threshold maximising sensitivity + specificity - 1 (score >= threshold is positive)."""
    if y01.min() == y01.max():
        return 0.5
    fpr, tpr, thresholds = roc_curve(y01, scores)
    best = int(np.argmax(tpr[1:] - fpr[1:])) + 1  # thresholds[0] is +inf: "call nobody positive"
    return float(thresholds[best])


# --- the result ---------------------------------------------------------------------------


@dataclass
class NestedProbeResult:
    """What :func:`nested_probe` measured.

    Attributes
    ----------
    task : str
        ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
    metric : str
        Name of the headline metric.
    table : pandas.DataFrame
        One row per representation (and per baseline): ``mean`` and ``std``
        over the outer folds and ``fold_0`` ... (as
        :func:`ecgsoup.evaluate.layer_probe` returns, same folds, same
        numbers), then ``pooled`` (the metric of the pooled out-of-fold
        scores) with ``pooled_low`` / ``pooled_high`` (bootstrap interval).
    verdict : pandas.DataFrame
        The headline: the representation chosen by inner CV in each outer
        training fold, one row per metric (``value``, ``low``, ``high``).
    chosen : list of str
        The representation chosen in each outer fold.
    inner_scores : list of dict
        Per outer fold, the inner-CV metric of every representation.
    scores : dict of str to ndarray
        Pooled out-of-fold scores per representation (positive-class
        probability, class probabilities, or predicted value).
    chosen_scores : ndarray
        Pooled out-of-fold scores of the chosen representations.
    thresholds : ndarray
        Binary: the Youden threshold of each outer fold (chosen on inner
        out-of-fold scores of its training records).
    operating_points : pandas.DataFrame
        Binary: sensitivity and specificity with intervals at the Youden
        thresholds and at the thresholds given.
    fold : ndarray
        Each record's outer test fold (the first, with repeats).
    y : ndarray
        The targets as given.
    classes : list
        Class labels (the positive one last for binary); empty for regression.
    baselines : list of str
        Rows of ``table`` that are baselines, not representations.
    settings : dict
        Probe, folds, inner folds, bootstrap: what a methods section needs.
    """

    task: str
    metric: str
    table: pd.DataFrame
    verdict: pd.DataFrame
    chosen: list
    inner_scores: list
    scores: dict
    chosen_scores: np.ndarray
    thresholds: np.ndarray
    operating_points: pd.DataFrame
    fold: np.ndarray
    y: np.ndarray
    classes: list
    baselines: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def headline(self) -> tuple[float, float, float]:
        """``(value, low, high)`` of the headline metric."""
        row = self.verdict.iloc[0]
        return float(row["value"]), float(row["low"]), float(row["high"])

    def best_row(self) -> str:
        """The best representation row by mean over folds: chosen on the folds that score it (optimistic)."""
        rows = self.table.drop(index=self.baselines, errors="ignore")
        return str(rows["mean"].idxmax())

    def summary(self) -> str:
        """Plain text: the headline first, then how the best row should be read."""
        value, low, high = self.headline
        counts = pd.Series(self.chosen).value_counts()
        choice = ", ".join(f"{name} in {n} of {len(self.chosen)}" for name, n in counts.items())
        lines = [
            f"nested CV verdict: {self.verdict.index[0]} {value:.4f} [95 % CI {low:.4f}, {high:.4f}] "
            f"(representation chosen by {self.settings['inner_cv']}-fold inner CV inside each training fold: "
            f"{choice}; percentile bootstrap over {len(self.y)} records, {self.settings['n_bootstrap']} resamples)"
        ]
        for name, row in self.verdict.iloc[1:].iterrows():
            lines.append(f"  {name} {row['value']:.4f} [95 % CI {row['low']:.4f}, {row['high']:.4f}]")
        best = self.best_row()
        lines.append(f"best row {best} ({self.table.loc[best, 'mean']:.4f}): chosen on these folds (optimistic); "
                     "quote the nested verdict")  # fmt: skip
        for name, row in self.operating_points.iterrows():
            lines.append(
                f"  at {name}: sensitivity {row['sensitivity']:.3f} [{row['sensitivity_low']:.3f}, "
                f"{row['sensitivity_high']:.3f}], specificity {row['specificity']:.3f} "
                f"[{row['specificity_low']:.3f}, {row['specificity_high']:.3f}]"
            )
        return "\n".join(lines)


# --- the probe ----------------------------------------------------------------------------


def _inner_splits(task, y_train, groups_train, inner_cv, seed):
    n = len(y_train)
    if groups_train is not None:
        k = min(inner_cv, len(np.unique(groups_train)))
        return list(GroupKFold(k).split(np.zeros(n), None, groups_train)) if k >= 2 else []
    if task in ("binary", "multiclass"):
        counts = np.unique(np.asarray(y_train), return_counts=True)[1]
        if counts.max() >= inner_cv and len(counts) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a rare class in fewer folds than inner_cv
                splitter = StratifiedKFold(inner_cv, shuffle=True, random_state=seed)
                return list(splitter.split(np.zeros(n), y_train))
    return list(KFold(min(inner_cv, n), shuffle=True, random_state=seed).split(np.zeros(n)))


def nested_probe(
    X_layers,
    y,
    *,
    task=None,
    estimator=None,
    cv=5,
    n_repeats=1,
    inner_cv=3,
    fusions=("ppa",),
    layer_spec=None,
    n_layers=13,
    baselines=None,
    groups=None,
    thresholds=(),
    n_bootstrap=1000,
    random_state=0,
    progress=None,
):
    """Layer-wise probe with the representation chosen by nested cross-validation.

    Parameters
    ----------
    X_layers : array-like of shape (n_samples, n_features)
        Layer-wise embeddings, e.g. a store's ``X``.
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        Binary, multiclass, multi-label (indicator) or continuous targets.
        For a binary target the larger label (``np.unique(y)[-1]``, e.g. 1) is
        the positive class.
    task : {"binary", "multiclass", "multilabel", "regression"}, default=None
        ``None``: :func:`target_kind` (a numeric target with more than 20
        distinct values is regression).
    estimator : estimator, default=None
        The probe.  ``None``: standardisation + logistic regression (C=1;
        one-vs-rest for multi-label), or + ridge regression with its penalty
        chosen inside the training fold (regression): the probe of
        :func:`ecgsoup.evaluate.layer_probe`.
    cv : int or iterable of (train, test), default=5
        Outer folds, as in :func:`ecgsoup.evaluate.layer_probe` (an int is
        ``RepeatedStratifiedKFold``, ``RepeatedKFold`` for multi-label and
        regression targets, seeded with ``random_state``).
    n_repeats : int, default=1
        Repetitions when ``cv`` is an int.  With repeats, a record's pooled
        score is the mean of its out-of-fold scores.
    inner_cv : int, default=3
        Inner folds inside each outer training fold (stratified for
        classes; by ``groups`` when given).
    fusions : sequence of {"ppa", "pma"} or dict, default=("ppa",)
        Fusion rows, as in :func:`ecgsoup.evaluate.layer_probe`.
    layer_spec, n_layers
        What the columns of ``X_layers`` are, as in
        :func:`ecgsoup.evaluate.layer_probe`.
    baselines : dict of str to array-like, default=None
        Other feature matrices (e.g. clinical ECG features, one row per
        record) scored on the same folds with the same probe after median
        imputation; reported, never chosen.
    groups : array-like, default=None
        Groups for a group-aware outer ``cv`` and for the inner folds.
    thresholds : sequence of float, default=()
        Binary: extra score thresholds at which to report sensitivity and
        specificity.
    n_bootstrap : int, default=1000
        Percentile bootstrap resamples of the records (seeded with
        ``random_state``).
    random_state : int, default=0
        Seeds the folds, the inner folds, PMA and the bootstrap.
    progress : callable, default=None
        Called with one line of text after each outer fold.

    Returns
    -------
    result : NestedProbeResult
    """
    from ecgsoup.evaluate import cv_splits, default_probe, representations

    X_layers = np.asarray(X_layers)
    y = np.asarray(y)
    task = target_kind(y) if task is None else task
    if task not in _METRIC_NAMES:
        raise ValueError(f"task={task!r}; use one of {list(_METRIC_NAMES)}.")
    if task == "regression":
        y = y.astype(float)
        if np.isnan(y).any():
            raise ValueError(f"y has {int(np.isnan(y).sum())} missing values; drop those records first.")
    classes = [] if task in ("regression", "multilabel") else sorted(np.unique(y).tolist())
    if task == "binary" and len(classes) != 2:
        raise ValueError(f"A binary target needs two values; y has {classes}.")
    probe = default_probe(task) if estimator is None else estimator
    scoring = get_scorer("r2") if task == "regression" else None
    if scoring is None:
        from ecgsoup.evaluate import macro_auc_scorer

        scoring = macro_auc_scorer
    if isinstance(random_state, np.random.RandomState) or random_state is None:
        random_state = 0 if random_state is None else int(random_state.randint(np.iinfo(np.int32).max))
    split_kind = "multilabel-indicator" if task in ("multilabel", "regression") else task
    folds = cv_splits(cv, X_layers, y, split_kind, n_repeats, random_state, groups)
    if not folds:
        raise ValueError("cv produced no train/test splits.")
    steps = representations(layer_spec, n_layers, fusions, random_state)
    baselines = {name: np.asarray(F, dtype=float) for name, F in (baselines or {}).items()}
    for name, F in baselines.items():
        if len(F) != len(y):
            raise ValueError(f"baseline {name!r} has {len(F)} rows but y has {len(y)}.")
    groups = None if groups is None else np.asarray(groups)

    n = len(y)
    width = None if task in ("binary", "regression") else (y.shape[1] if task == "multilabel" else len(classes))
    shape = (n,) if width is None else (n, width)
    names = list(steps) + list(baselines)
    sums = {name: np.zeros(shape) for name in names}
    chosen_sum = np.zeros(shape)
    threshold_sum = np.zeros(n)
    coverage = np.zeros(n)
    fold_of = np.full(n, -1)
    fold_scores = {name: [] for name in names}
    chosen, inner_scores, fold_thresholds = [], [], []

    def pipeline(name):
        if name in baselines:
            return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), clone(probe))
        return Pipeline([("represent", clone(steps[name])), ("probe", clone(probe))])

    def data(name):
        return baselines[name] if name in baselines else X_layers

    for k, (train, test) in enumerate(folds):  # the outer folds' warnings reach the caller
        started = time.perf_counter()
        train, test = np.asarray(train), np.asarray(test)
        this_fold = {}
        for name in names:
            fitted = pipeline(name).fit(data(name)[train], y[train])
            fold_scores[name].append(float(scoring(fitted, data(name)[test], y[test])))
            this_fold[name] = _oriented_scores(fitted, data(name)[test], task, classes)
            sums[name][test] += this_fold[name]
        # Inner CV: which representation, and which threshold, the training records alone choose.
        inner = _inner_splits(task, y[train], None if groups is None else groups[train], inner_cv,
                              random_state + k)  # fmt: skip
        inner_oof = {name: np.zeros((len(train),) + shape[1:]) for name in steps}
        with warnings.catch_warnings():
            # The inner fits repeat the outer folds' warnings several times over: one report is enough.
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            for inner_train, inner_test in inner:
                for name in steps:
                    fitted = pipeline(name).fit(X_layers[train[inner_train]], y[train[inner_train]])
                    inner_oof[name][inner_test] = _oriented_scores(fitted, X_layers[train[inner_test]], task,
                                                                   classes)  # fmt: skip
        y_train = y[train]
        truth = None if task == "regression" else truth_matrix(y_train, task, classes)
        values = {name: _point(task, truth, inner_oof[name], y_train) for name in steps}
        best = max(values, key=lambda name: values[name])
        chosen.append(best)
        inner_scores.append(values)
        if task == "binary":
            fold_thresholds.append(_youden(truth[:, 0], inner_oof[best]))
            threshold_sum[test] += fold_thresholds[-1]
        chosen_sum[test] += this_fold[best]
        coverage[test] += 1
        fold_of[test] = np.where(fold_of[test] < 0, k, fold_of[test])
        if progress is not None:
            progress(f"fold {k + 1}/{len(folds)}: {len(train)} training records, chosen {best} "
                     f"(inner {values[best]:.3f}); this fold {fold_scores[best][-1]:.3f} "
                     f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    scored = coverage > 0
    if not scored.all():
        raise ValueError(f"{int((~scored).sum())} records are in no test fold; every record needs one.")
    mean = (lambda total: total / (coverage[:, None] if total.ndim == 2 else coverage))  # noqa: E731
    scores = {name: mean(total) for name, total in sums.items()}
    chosen_scores = mean(chosen_sum)
    truth = None if task == "regression" else truth_matrix(y, task, classes)

    def interval(statistic, cells=1):
        values = _bootstrap_values(statistic, n, n_bootstrap, random_state, cells)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(values, [2.5, 97.5])

    def metric_interval(S):
        if task == "regression":
            return interval(_r2_statistic(y, S))
        return interval(_auc_statistic(truth, S), truth.shape[1])

    rows = {}
    for name in names:
        pooled = _point(task, truth, scores[name], y)
        low, high = metric_interval(scores[name])
        folds_row = fold_scores[name]
        rows[name] = {"mean": float(np.mean(folds_row)), "std": float(np.std(folds_row)),
                      **{f"fold_{i}": v for i, v in enumerate(folds_row)},
                      "pooled": pooled, "pooled_low": low, "pooled_high": high}  # fmt: skip
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "representation"

    metric = "R²" if task == "regression" else ("ROC AUC" if task == "binary" else "macro ROC AUC")
    value = _point(task, truth, chosen_scores, y)
    low, high = metric_interval(chosen_scores)
    verdict = [{"metric": metric, "value": value, "low": low, "high": high}]
    if task == "regression":
        mae = float(np.mean(np.abs(y - chosen_scores)))
        mlow, mhigh = interval(lambda d: np.abs(y[d] - chosen_scores[d]).mean(axis=1))
        verdict.append({"metric": "MAE", "value": mae, "low": mlow, "high": mhigh})
    verdict = pd.DataFrame(verdict).set_index("metric")

    points = []
    record_thresholds = threshold_sum / coverage
    if task == "binary":
        positive = truth[:, 0].astype(bool)
        calls = [("Youden threshold chosen inside each training fold", record_thresholds)]
        calls += [(f"threshold {t:g}", np.full(n, float(t))) for t in thresholds]
        for label, cut in calls:
            called = chosen_scores >= cut
            sens = float((called & positive).sum() / max(positive.sum(), 1))
            spec = float((~called & ~positive).sum() / max((~positive).sum(), 1))
            s_low, s_high = interval(_rate_statistic(called, positive))
            p_low, p_high = interval(_rate_statistic(~called, ~positive))
            points.append({"operating point": label,
                           "threshold": float(np.mean(fold_thresholds)) if label.startswith("Youden") else float(cut[0]),
                           "sensitivity": sens, "sensitivity_low": s_low, "sensitivity_high": s_high,
                           "specificity": spec, "specificity_low": p_low, "specificity_high": p_high})  # fmt: skip
    operating = pd.DataFrame(points)
    if len(operating):
        operating = operating.set_index("operating point")

    settings = {
        "probe": describe_probe(estimator, task),
        "n_folds": len(folds),
        "inner_cv": inner_cv,
        "n_bootstrap": n_bootstrap,
        "random_state": random_state,
        "fusions": [name for name in steps if not name.startswith("layer_")],
        "metric": _METRIC_NAMES[task],
        "fold_thresholds": fold_thresholds,
    }
    return NestedProbeResult(task, metric, table, verdict, chosen, inner_scores, scores, chosen_scores,
                             np.asarray(fold_thresholds), operating, fold_of, y, classes, list(baselines),
                             settings)  # fmt: skip
