"""The benchmark's one-vs-rest logistic solver against scikit-learn's fits, class by class and C by C."""

import threading

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from ecgsoup.benchmark import logistic_scores, one_vs_rest_logistic


def _problem(seed=0, n=300, d=12, k=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    logits = X @ rng.standard_normal((d, k)) + rng.normal(-1.5, 0.5, k)
    Y = (rng.random((n, k)) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, Y


@pytest.mark.parametrize("Cs", [(0.01, 1.0, 0.1), (10.0,)])
def test_fits_equal_scikit_learns_one_vs_rest_for_every_C(Cs):
    X, Y = _problem()
    Y[:, 3] = 0  # a constant class: scored with its constant, as OneVsRestClassifier does
    fits = one_vs_rest_logistic(X, Y, Cs)
    assert len(fits) == len(Cs)
    for C, fit in zip(Cs, fits):
        reference = OneVsRestClassifier(LogisticRegression(C=C, max_iter=500)).fit(X, Y)
        np.testing.assert_allclose(logistic_scores(X, fit), reference.predict_proba(X), atol=1e-6)
        fitted = [e for i, e in enumerate(reference.estimators_) if i != 3]
        np.testing.assert_allclose(np.delete(fit[0], 3, axis=1), np.stack([e.coef_[0] for e in fitted], 1), atol=1e-5)
        assert np.isnan(np.delete(fit[2], 3)).all() and fit[2][3] == 0


def test_nearly_separable_classes_stop_where_scikit_learn_stops():
    """Weak regularisation on separable data: both stop at max_iter or at the same gradient tolerance."""
    X, Y = _problem(seed=1, n=80, d=20, k=4)
    fit = one_vs_rest_logistic(X, Y, [1e4], max_iter=50)[0]
    reference = OneVsRestClassifier(LogisticRegression(C=1e4, max_iter=50)).fit(X, Y)
    np.testing.assert_allclose(logistic_scores(X, fit), reference.predict_proba(X), atol=1e-4)


def test_no_class_varies_and_no_thread_is_left_behind():
    X, _ = _problem()
    before = threading.active_count()
    fits = one_vs_rest_logistic(X, np.ones((len(X), 2), int), [1.0])
    assert (logistic_scores(X, fits[0]) == 1).all()
    assert threading.active_count() == before


def test_missing_values_are_refused_with_the_fix():
    X, Y = _problem()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="impute them first"):
        one_vs_rest_logistic(X, Y, [1.0])


def test_a_failing_solver_raises_in_the_caller_and_leaves_no_thread():
    X, Y = _problem()
    before = threading.active_count()
    with pytest.raises((TypeError, ValueError)):
        one_vs_rest_logistic(X, Y, [1.0, 0.1], max_iter="many")
    assert threading.active_count() == before
