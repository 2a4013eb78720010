"""One-vs-rest L2 logistic regressions, many at once: scikit-learn's solver, evaluations batched.

A probe fits one logistic regression per class and per ``C``.  Fitted one by one
(as :class:`~sklearn.multiclass.OneVsRestClassifier` does), every iteration of
every fit reads the whole training matrix for two matrix-vector products.  Here
each (class, ``C``) pair is still its own L-BFGS-B problem, run by
:func:`scipy.optimize.minimize` with the options, starting point and objective of
:class:`~sklearn.linear_model.LogisticRegression` (``solver="lbfgs"``), so each
takes the path it takes in scikit-learn.  What changes is how the objective is
evaluated: the problems run side by side in threads, and whenever every running
problem is waiting for its loss and gradient, the calling thread computes all of
them together with two matrix products.  The coefficients agree with scikit-learn's to the
rounding of those products.
"""

from __future__ import annotations

import threading

import numpy as np
from scipy.optimize import minimize

__all__ = ["one_vs_rest_logistic", "logistic_scores"]

# scikit-learn's LogisticRegression(solver="lbfgs") options, so that each problem stops where it stops there.
_LBFGS_OPTIONS = {"maxls": 50, "ftol": 64 * np.finfo(float).eps}


class _BatchedObjective:
    """Loss and gradient of many problems over one training matrix, computed once every problem waits.

    Problem ``p`` is the mean logistic loss of column ``p`` of ``Y`` plus
    ``alphas[p] / 2 * ||coef||^2`` (intercept unpenalised): the objective of
    :class:`~sklearn.linear_model.LogisticRegression` with ``alpha = 1 / (C n)``.
    The solver threads only post their points and wait; the thread that calls
    :meth:`serve` does every evaluation, so the large temporaries are always
    allocated by one thread (memory freed by one thread is reused by it, where
    many threads would each keep an allocator arena of their own).
    """

    def __init__(self, X, Y, alphas):
        import torch

        self._torch = torch
        self._X = torch.from_numpy(X)
        self._Y = torch.from_numpy(Y)
        self._alphas = alphas
        self._lock = threading.Lock()
        self._all_wait = threading.Condition(self._lock)  # wakes the serving thread only
        self._answered = [threading.Event() for _ in range(Y.shape[1])]  # wakes one solver thread each
        self._running = Y.shape[1]
        self._waiting: dict[int, np.ndarray] = {}
        self._answers: dict[int, tuple] = {}
        self._error: BaseException | None = None

    def __call__(self, w, problem):
        """A solver thread's evaluation: post the point, wait for its loss and gradient."""
        with self._lock:
            if self._error is not None:
                raise RuntimeError("a batched logistic evaluation failed") from self._error
            self._waiting[problem] = w
            if len(self._waiting) >= self._running:
                self._all_wait.notify()
        self._answered[problem].wait()
        self._answered[problem].clear()
        with self._lock:
            if self._error is not None:
                raise RuntimeError("a batched logistic evaluation failed") from self._error
            return self._answers.pop(problem)

    def leave(self):
        """A problem finished (or failed): the others no longer wait for it."""
        with self._lock:
            self._running -= 1
            if len(self._waiting) >= self._running:
                self._all_wait.notify()

    def serve(self):
        """Evaluate whenever every running problem waits, until none runs."""
        while True:
            with self._lock:
                while self._running and len(self._waiting) < self._running:
                    self._all_wait.wait()
                if not self._running:
                    return
                waiting, self._waiting = self._waiting, {}
            try:
                answers = self._evaluate(waiting)
            except BaseException as error:  # every waiting thread must wake up, or the fit hangs
                with self._lock:
                    self._error = error
                for problem in waiting:
                    self._answered[problem].set()
                raise
            with self._lock:
                self._answers.update(answers)
            for problem in waiting:
                self._answered[problem].set()

    def _evaluate(self, waiting: dict) -> dict:
        torch = self._torch
        problems = list(waiting)
        W = torch.from_numpy(np.stack([waiting[p] for p in problems], axis=1))
        n, d = self._X.shape
        Y = self._Y[:, torch.as_tensor(problems)]
        alphas = torch.from_numpy(self._alphas[problems])
        raw = self._X @ W[:d] + W[d]
        losses = (torch.nn.functional.softplus(raw) - Y * raw).sum(0) / n + 0.5 * alphas * (W[:d] * W[:d]).sum(0)
        residual = (torch.sigmoid(raw) - Y) / n
        gradients = torch.empty_like(W)
        gradients[:d] = self._X.T @ residual + alphas * W[:d]
        gradients[d] = residual.sum(0)
        losses, gradients = losses.numpy(), gradients.numpy()
        return {p: (float(losses[j]), gradients[:, j].copy()) for j, p in enumerate(problems)}


def one_vs_rest_logistic(X, Y, Cs, *, max_iter=500, tol=1e-4):
    """One-vs-rest L2 logistic regressions of every column of ``Y``, for every ``C`` of ``Cs``.

    The same fits as ``OneVsRestClassifier(LogisticRegression(C=C,
    max_iter=max_iter, tol=tol))`` for each ``C`` (L-BFGS-B from zero with
    scikit-learn's options, one problem per class and ``C``), evaluated
    together (see the module docstring).  A column of ``Y`` that is constant
    gets that constant as its score, as in ``OneVsRestClassifier``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Training inputs (already imputed and standardised).
    Y : array of shape (n_samples, n_classes)
        0/1 indicator targets.
    Cs : sequence of float
        Inverse regularisation strengths.

    Returns
    -------
    fits : list of (coef (n_features, n_classes), intercept (n_classes,), constant (n_classes,))
        One per ``C``, in the order of ``Cs``; ``constant`` is NaN for every
        class that was fitted.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n, d = X.shape
    if Y.ndim != 2 or len(Y) != n:
        raise ValueError(f"Y has shape {Y.shape}; it needs one row per row of X ({n}) and one column per class.")
    if not np.isfinite(X).all():
        raise ValueError("X has NaN or infinite values; impute them first (the probe imputes with the median).")
    positives = Y.sum(axis=0)
    fitted = (positives > 0) & (positives < n)
    varies = np.flatnonzero(fitted)
    constant = np.where(fitted, np.nan, (positives > 0).astype(float))
    k = len(varies)
    targets = np.ascontiguousarray(np.tile(Y[:, varies], (1, len(Cs))))
    alphas = np.repeat([1.0 / (float(C) * n) for C in Cs], k)
    solutions = np.zeros((d + 1, k * len(Cs)))
    if k:
        objective = _BatchedObjective(X, targets, alphas)
        options = {**_LBFGS_OPTIONS, "maxiter": max_iter, "gtol": tol}
        failures = []

        def solve(problem):
            try:
                result = minimize(objective, np.zeros(d + 1), args=(problem,), method="L-BFGS-B", jac=True,
                                  options=options)  # fmt: skip
                solutions[:, problem] = result.x
            except BaseException as error:
                failures.append(error)
            finally:
                objective.leave()

        threads = [threading.Thread(target=solve, args=(p,), daemon=True) for p in range(k * len(Cs))]
        for thread in threads:
            thread.start()
        try:
            objective.serve()
        finally:
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
    fits = []
    for i in range(len(Cs)):
        W = np.zeros((d + 1, Y.shape[1]))
        W[:, varies] = solutions[:, i * k : (i + 1) * k]
        fits.append((W[:d], W[d], constant))
    return fits


def logistic_scores(X, fit) -> np.ndarray:
    """``predict_proba`` of one fit of :func:`one_vs_rest_logistic` on ``X``, ``(n_samples, n_classes)``."""
    from scipy.special import expit

    coef, intercept, constant = fit
    S = expit(np.asarray(X, dtype=np.float64) @ coef + intercept)
    fixed = ~np.isnan(constant)
    S[:, fixed] = constant[fixed]
    return S
