"""The probes of the benchmark: logistic (with its scikit-learn reference) and the MLP head, run as independent jobs."""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup.benchmark._data import Task
from ecgsoup.benchmark._logistic import logistic_scores, one_vs_rest_logistic
from ecgsoup.fusion import LayerSelector
from ecgsoup.metrics import class_aucs, macro_rule
from ecgsoup.mlp_head import MLPHeadClassifier
from ecgsoup.pma import PMA, PMAClassifier

# --- probes -------------------------------------------------------------------------------


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


PROBE_NAMES = {
    "logistic": "standardised logistic regression (one-vs-rest), C chosen on validation",
    "mlp": "ECG-Soup MLP head (bn-drop-lin), fixed settings, early stopping inside the training folds",
    "logistic-sklearn": "standardised logistic regression (one-vs-rest), C chosen on validation, the "
                        "imputer-scaler-classifier pipeline refitted for every C and class by scikit-learn "
                        "(reference)",
}


def _hybrid(F: np.ndarray, Z: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Clinical features beside an embedding, balanced as :func:`ecgsoup.hybrid.hybrid_features` does.

    Each block is imputed, standardised and scaled to a total variance of 1
    (:func:`ecgsoup.hybrid.balanced_columns`, statistics from the training rows
    only), so 14 features are not drowned by 192 embedding dimensions.
    """
    from ecgsoup.hybrid import balanced_columns

    stacked = np.hstack([F, Z])
    return balanced_columns([F.shape[1], Z.shape[1]]).fit(stacked[train]).transform(stacked)


def _inner_value(Y, task, predict) -> float:
    """Mean validation macro AUC (ECG-Soup rule) of ``predict(train, validation)`` over the inner splits."""
    return float(np.mean([macro_rule(class_aucs(Y[va], predict(tr, va)))[0] for tr, va in task.inner]))


class _LogisticProbe:
    """Standardised one-vs-rest logistic regression; C chosen on the inner validation.

    Each training split is imputed and standardised once and reused for every
    ``C``; the fits are scikit-learn's L-BFGS fits, one per class and ``C``,
    run side by side with their evaluations batched
    (:func:`~ecgsoup.benchmark._logistic.one_vs_rest_logistic`), so the scores
    are those of the imputer-scaler-classifier pipeline refitted for every
    ``C`` (the ``"logistic-sklearn"`` probe) to the rounding of matrix products.
    """

    name = "logistic"

    def __init__(self, task, Y, pos, Cs, seed):
        self.task, self.Y, self.pos, self.Cs = task, Y, pos, list(Cs)

    def _path_scores(self, Z, tr, te, Cs):
        """Scores on ``te`` of the fits on ``tr``, one array per C of ``Cs``."""
        scaler = _standardiser().fit(Z[self.pos[tr]])
        fits = one_vs_rest_logistic(scaler.transform(Z[self.pos[tr]]), self.Y[tr], Cs)
        X_te = scaler.transform(Z[self.pos[te]])
        return [logistic_scores(X_te, fit) for fit in fits]

    def _choose(self, per_split, Z_final):
        values = np.array([[macro_rule(class_aucs(self.Y[va], S))[0] for S in self._path_scores(Z, tr, va, self.Cs)]
                           for tr, va, Z in per_split]).mean(axis=0)  # fmt: skip
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
            values[C] = float(np.mean([macro_rule(class_aucs(self.Y[va], self._fit_predict(Z, C, tr, va)))[0]
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


PROBES = {"logistic": _LogisticProbe, "logistic-sklearn": _SklearnLogisticProbe, "mlp": _MLPProbe}


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


def run_jobs(jobs: dict, n_jobs) -> dict:
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
class ProbeRun:
    """One probe on one task: its fits as independent jobs, then the rows they make.

    The first round fits every layer, the fusions, the random twin's layers
    and the clinical features; the second the hybrid (it needs the chosen
    layer) and, for a probe that reuses another probe's choice of random
    layer, that layer.
    """

    probe: object
    task: Task
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


def run_probes(runs: dict, n_jobs) -> tuple[dict, dict]:
    """Every ``ProbeRun`` of ``{(task, probe): run}`` in two parallel rounds.

    Returns ``{(task, probe): cells}`` and ``{(task, probe): seconds}``, the
    seconds summed over that probe's fits (which may have run side by side).
    """
    first = run_jobs({(key, job): spec for key, run in runs.items() for job, spec in run.first_jobs().items()},
                      n_jobs)  # fmt: skip
    done = {key: {job: first[(k, job)] for (k, job) in first if k == key} for key in runs}
    choices = {}
    for (task, probe), run in runs.items():
        if run.random_layers is not None and run.chooses_random:
            choices[task] = run.random_choice(done[(task, probe)])
    second = run_jobs({(key, job): spec for key, run in runs.items()
                        for job, spec in run.second_jobs(done[key], choices.get(key[0])).items()}, n_jobs)  # fmt: skip
    for (key, job), value in second.items():
        done[key][job] = value
    cells = {key: run.cells(done[key], choices.get(key[0])) for key, run in runs.items()}
    seconds = {key: float(sum(t for _, t in done[key].values())) for key in runs}
    return cells, seconds
