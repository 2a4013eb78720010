"""Evaluation: the ECG-Soup macro AUC and a layer-wise linear probe.

``macro_auc`` follows the authors' metric: the unweighted mean of per-class
ROC AUCs over *all* classes, where a class whose AUC is undefined on the split
(no positives or no negatives in ``y_true``) counts as **0.5** instead of being
dropped.  A warning reports how many classes were counted that way.

``layer_probe`` cross-validates one linear probe per layer
(``LayerSelector(layers=l)`` + a classifier) and per fusion method (PPA, PMA)
on the *same* folds, and returns a tidy table; ``plot_layer_probe`` draws it.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold, cross_val_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target

from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.metrics import macro_auc
from ecgsoup.pma import PMA

__all__ = ["macro_auc", "macro_auc_scorer", "layer_probe", "plot_layer_probe"]


def decision_scores(estimator, X):
    for method in ("predict_proba", "decision_function"):
        if hasattr(estimator, method):
            return np.asarray(getattr(estimator, method)(X), dtype=float)
    raise TypeError(f"{type(estimator).__name__} has neither predict_proba nor decision_function.")


def macro_auc_scorer(estimator, X, y) -> float:
    """Scorer (``scoring=`` in sklearn's CV tools) computing :func:`macro_auc`.

    Uses ``predict_proba`` (else ``decision_function``) and the estimator's
    ``classes_``, so a class absent from a test fold still gets its column.
    A class present in the test fold but never seen in training gets a
    constant score, i.e. an AUC of 0.5.
    """
    scores = decision_scores(estimator, X)
    y = np.asarray(y)
    if type_of_target(y) == "multilabel-indicator" or scores.ndim == 1:
        return macro_auc(y, scores)
    labels = np.asarray(estimator.classes_)
    unseen = np.setdiff1d(np.unique(y), labels)
    if unseen.size:
        labels = np.concatenate([labels, unseen])
        scores = np.hstack([scores, np.zeros((len(scores), unseen.size))])
    return macro_auc(y, scores, labels=labels)


def default_probe(y_kind: str):
    """Standardise, then logistic regression (one per label for multi-label targets) or ridge regression.

    The ridge penalty is chosen by efficient leave-one-out on the training
    records only (``RidgeCV``): an embedding has hundreds of columns, so a
    fixed small penalty overfits a few dozen records.
    """
    if y_kind in ("regression", "continuous"):
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    logistic = LogisticRegression(max_iter=2000)
    if y_kind in ("multilabel-indicator", "multilabel"):
        return make_pipeline(StandardScaler(), OneVsRestClassifier(logistic))
    return make_pipeline(StandardScaler(), logistic)


def cv_splits(cv, X, y, y_kind, n_repeats, random_state, groups):
    if isinstance(cv, Integral):
        if y_kind in ("multilabel-indicator", "multilabel", "regression", "continuous"):
            splitter = RepeatedKFold(n_splits=cv, n_repeats=n_repeats, random_state=random_state)
        else:
            splitter = RepeatedStratifiedKFold(
                n_splits=cv, n_repeats=n_repeats, random_state=random_state
            )
    else:
        splitter = cv
    if hasattr(splitter, "split"):
        return list(splitter.split(X, y, groups))
    return list(splitter)  # an iterable of (train, test) pairs


def _one_stream(spec) -> bool:
    blocks = spec.layers[1:] or spec.layers
    return len({(layer.width, layer.stream) for layer in blocks}) == 1


def _fusion_steps(fusions, spec, n_layers, random_state):
    if isinstance(fusions, dict):
        steps = {}
        for name, step in fusions.items():
            # A fusion given without a specification reads the probe's (its readout included).
            if spec is not None and "layer_spec" in step.get_params() and step.get_params()["layer_spec"] is None:
                step = clone(step).set_params(layer_spec=spec)
            steps[name] = step
        return steps
    if spec is not None and not _one_stream(spec):
        # PPA and PMA average one representation space; a CNN's stages are several.
        warnings.warn(
            f"The layers of {spec.model_name or 'this model'} have different widths or streams, so "
            "PPA and PMA do not apply; the 'all_balanced' row (every layer, each standardised and "
            "given the same total variance) takes their place.",
            UserWarning, stacklevel=3,
        )
        return {"all_balanced": LayerSelector(layers="all", balance=True, layer_spec=spec)}
    known = {
        "ppa": lambda: PPA(layer_spec=spec, n_layers=n_layers),
        "pma": lambda: PMA(layer_spec=spec, n_layers=n_layers, random_state=random_state),
    }
    steps = {}
    for name in fusions:
        if name not in known:
            raise ValueError(
                f"Unknown fusion {name!r}; use 'ppa', 'pma', or pass a dict "
                "{name: transformer} such as {'pma': PMA(max_iter=50)}."
            )
        steps[name] = known[name]()
    return steps


def representations(layer_spec, n_layers, fusions, random_state) -> dict:
    """Every single layer (``layer_00`` ...) then the fusion rows: the first step of each probe pipeline."""
    count = n_layers if layer_spec is None else len(layer_spec.layers)
    steps = {
        f"layer_{layer:02d}": LayerSelector(layers=layer, layer_spec=layer_spec, n_layers=n_layers)
        for layer in range(count)
    }
    steps.update(_fusion_steps(fusions, layer_spec, n_layers, random_state))
    return steps


def layer_probe(
    X_layers,
    y,
    *,
    estimator=None,
    task=None,
    cv=5,
    n_repeats=1,
    scoring=None,
    fusions=("ppa", "pma"),
    layer_spec=None,
    n_layers=13,
    groups=None,
    random_state=None,
    n_jobs=None,
):
    """Cross-validated probe of every layer and of the fusion methods.

    Each representation is the first step of ``Pipeline([(step), (estimator)])``:
    ``LayerSelector(layers=l)`` for every layer, then each fusion
    (``PPA``, ``PMA`` — PMA's gate is trained on the training folds only).
    All rows use the same folds, so their scores are paired.

    Parameters
    ----------
    X_layers : array-like of shape (n_samples, n_features)
        Layer-wise embeddings, e.g. from ``LayerwiseEmbedder`` or a store.
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        Binary, multiclass, multi-label (indicator) or continuous targets.
    estimator : estimator, default=None
        Probe fitted on each representation.  ``None``: ``StandardScaler`` +
        ``LogisticRegression(C=1)`` (one-vs-rest for multi-label targets), or
        ``StandardScaler`` + ``RidgeCV`` (penalty chosen by leave-one-out inside
        the training fold) for regression.  The same probe as
        ``ecgsoup evaluate`` and :func:`ecgsoup.nested.nested_probe`.
    task : {"binary", "multiclass", "multilabel", "regression"}, default=None
        ``None``: :func:`ecgsoup.nested.target_kind` (a numeric target with
        more than 20 distinct values, such as age, is regression).
    cv : int, CV splitter or iterable of (train, test), default=5
        An int means ``RepeatedStratifiedKFold(cv, n_repeats)`` (``RepeatedKFold``
        for multi-label and regression targets), shuffled with ``random_state``.
    n_repeats : int, default=1
        Repetitions when ``cv`` is an int.
    scoring : str or callable, default=None
        ``None`` uses :func:`macro_auc_scorer` (macro AUC, undefined classes as
        0.5), or R² for regression.
    fusions : sequence of {"ppa", "pma"} or dict, default=("ppa", "pma")
        Fusion rows to add; a dict ``{name: transformer}`` sets them up
        yourself (e.g. ``{"pma": PMA(max_iter=50)}``).  Empty for layers only.
    layer_spec : LayerSpec or None, default=None
        What the columns of ``X_layers`` are (``embedder.layer_spec_``,
        ``stored.layer_spec``): layers, widths and the model's readout.
        ``None``: ``n_layers`` equal blocks of raw numbers, no readout.
        For a model whose layers differ in width (a CNN), PPA and PMA do
        not apply and an ``all_balanced`` row takes their place.
    n_layers : int, default=13
        Number of equal blocks in ``X_layers`` when ``layer_spec`` is None.
    groups : array-like of shape (n_samples,), default=None
        Group labels passed to a group-aware ``cv`` splitter.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds (when ``cv`` is an int) and PMA's training.
    n_jobs : int, default=None
        Folds fitted in parallel by ``cross_val_score``.

    Returns
    -------
    result : pandas.DataFrame
        One row per representation (``layer_00`` .. ``layer_12``, then
        ``ppa``, ``pma``), columns ``mean``, ``std`` and ``fold_0`` .. with
        each fold's score.

    See Also
    --------
    plot_layer_probe : Draw the result.
    """
    from ecgsoup.nested import target_kind

    y_array = np.asarray(y)
    task = target_kind(y_array) if task is None else task
    y_kind = "multilabel-indicator" if task == "multilabel" else task
    if task == "regression":
        y = y_array = y_array.astype(float)
    if isinstance(random_state, np.random.RandomState):
        # One integer so that the folds and every PMA fit are reproducible together.
        random_state = int(random_state.randint(np.iinfo(np.int32).max))
    probe = default_probe(y_kind) if estimator is None else estimator
    if scoring is None:
        scoring = "r2" if task == "regression" else macro_auc_scorer
    folds = cv_splits(cv, X_layers, y_array, y_kind, n_repeats, random_state, groups)
    if not folds:
        raise ValueError("cv produced no train/test splits.")

    steps = representations(layer_spec, n_layers, fusions, random_state)
    rows = {}
    for name, step in steps.items():
        pipeline = Pipeline([("represent", clone(step)), ("probe", clone(probe))])
        rows[name] = cross_val_score(
            pipeline, X_layers, y, cv=folds, scoring=scoring, n_jobs=n_jobs, error_score="raise"
        )
    scores = pd.DataFrame.from_dict(
        rows, orient="index", columns=[f"fold_{i}" for i in range(len(folds))]
    )
    result = pd.DataFrame({"mean": scores.mean(axis=1), "std": scores.std(axis=1, ddof=0)})
    result = pd.concat([result, scores], axis=1)
    result.index.name = "representation"
    return result


def plot_layer_probe(result, ax=None, path=None, *, title=None, ylabel="macro ROC AUC (mean ± std over folds)",
                     ylim=None, baselines=()):
    """Score per layer with error bars; fusions and baselines as labelled horizontal lines.

    Parameters
    ----------
    result : pandas.DataFrame
        Output of :func:`layer_probe` (rows ``layer_XX`` and fusion names,
        columns ``mean`` and ``std``), optionally with extra rows (baselines).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a new figure (without pyplot, so it
        works under any backend, including Agg on a headless machine).
    path : str or path-like, default=None
        If given, the figure is saved there (format from the extension).
    title : str, default=None
        Axes title.
    ylabel : str
        Name the metric and the protocol, e.g. ``"ROC AUC, 5-fold CV"``.
    ylim : (float, float), default=None
        Y range; give the same one to every task's figure so they compare.
    baselines : sequence of str, default=()
        Rows drawn as dotted lines without a band (baselines rather than fusions).

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    if not {"mean", "std"} <= set(result.columns):
        raise ValueError("result must have 'mean' and 'std' columns, as layer_probe returns.")
    names = [str(name) for name in result.index]
    layer_rows = [name for name in names if name.startswith("layer_")]
    if not layer_rows:
        raise ValueError("result has no 'layer_XX' rows; pass the output of layer_probe.")
    if ax is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = figure.subplots()
    else:
        figure = ax.figure
    layers = [int(name.split("_", 1)[1]) for name in layer_rows]
    ax.errorbar(
        layers,
        result.loc[layer_rows, "mean"],
        yerr=result.loc[layer_rows, "std"],
        marker="o",
        capsize=3,
        color="black",
        label="single layer (± std over folds)",
    )
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:gray", "tab:cyan"]
    for i, name in enumerate(n for n in names if n not in layer_rows):
        mean, std = result.loc[name, "mean"], result.loc[name, "std"]
        colour = colours[i % len(colours)]
        label = name.upper() if name in ("ppa", "pma") else name
        if name in baselines:
            ax.axhline(mean, color=colour, linestyle=":", linewidth=2, label=f"{label} {mean:.3f}")
        else:
            ax.axhline(mean, color=colour, linestyle="--", label=f"{label} {mean:.3f} (band: ± std)")
            ax.axhspan(mean - std, mean + std, color=colour, alpha=0.12)
    ax.axhline(0.5, color="tab:red", linewidth=1, alpha=0.7, label="chance (0.5)")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = token embedding, not a learned representation)")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        import textwrap

        ax.set_title(textwrap.fill(title, 90), fontsize=10)
    # Below the axes, so that no curve or band is hidden behind it.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="x-small", frameon=False)
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure
