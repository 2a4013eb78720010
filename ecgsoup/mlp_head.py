"""The ECG-Soup MLP classification head on one fixed representation, as a scikit-learn classifier.

:class:`MLPHeadClassifier` is the head that :class:`ecgsoup.pma.PMAClassifier` puts
after its layer mixture (``head="mlp"``), trained the same way (AdamW, early stopping
on a hold-out of the training records), on a feature matrix instead of a mixture of
layers: BatchNorm -> Dropout(0.25) -> Linear(d, hidden) -> ReLU -> BatchNorm ->
Dropout(0.5) -> Linear(hidden, outputs).
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ecgsoup._sklearn_compat import Interval
from ecgsoup.pma import MIN_VALIDATION_SAMPLES, EarlyStopping

__all__ = ["MLPHeadClassifier"]


def _head(n_features: int, hidden: int, n_outputs: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(n_features), nn.Dropout(0.25), nn.Linear(n_features, hidden), nn.ReLU(),
                         nn.BatchNorm1d(hidden), nn.Dropout(0.5), nn.Linear(hidden, n_outputs))  # fmt: skip


class MLPHeadClassifier(ClassifierMixin, BaseEstimator):
    """ECG-Soup's MLP head on a fixed representation, for multi-label (0/1 indicator) or binary targets.

    Parameters
    ----------
    hidden : int, default=256
        Width of the hidden layer.
    max_iter : int, default=100
        Most epochs.
    learning_rate_init : float, default=1e-3
        AdamW learning rate, constant.
    weight_decay : float, default=0.05
        AdamW weight decay.
    batch_size : int, default=64
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training records and stop when
        their loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, keeping the best epoch's weights.  With fewer than 20
        held-out records (PMA's minimum) there is no early stopping.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, dropout, shuffling and the hold-out.

    Attributes
    ----------
    classes_ : ndarray
        ``arange(n_labels)`` for an indicator matrix, else the two classes.
    loss_curve_, validation_loss_curve_ : list of float
        Training and held-out loss per epoch (the latter empty without early stopping).
    n_iter_ : int
        Epochs run.
    """

    _parameter_constraints = {
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, hidden=256, max_iter=100, learning_rate_init=1e-3, weight_decay=0.05, batch_size=64,
                 early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, random_state=None):
        self.hidden = hidden
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y):
        """Train the head on ``X`` (n_samples, n_features) and ``y`` (labels or an indicator matrix)."""
        self._validate_params()
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float32)
        if type_of_target(y) == "multilabel-indicator":
            self.classes_, self._binary = np.arange(y.shape[1]), False
            targets = np.asarray(y, dtype=np.float32)
        else:
            self.classes_ = np.unique(y)
            if len(self.classes_) != 2:
                raise ValueError(f"MLPHeadClassifier takes binary or 0/1 indicator targets; y has "
                                 f"{len(self.classes_)} classes.")  # fmt: skip
            self._binary = True
            targets = (y == self.classes_[1]).astype(np.float32)[:, None]
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        n = len(X)
        n_val = int(round(self.validation_fraction * n)) if self.early_stopping else 0
        order = np.random.RandomState(seed).permutation(n)
        if n_val < MIN_VALIDATION_SAMPLES or n - n_val < 2:
            train_idx, val_idx = np.arange(n), None
        else:
            train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
        inputs, targets = torch.from_numpy(np.array(X)), torch.from_numpy(targets)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _head(X.shape[1], self.hidden, targets.shape[1])
            self._train(net, inputs, targets, train_idx, val_idx)
        self._network = copy.deepcopy(net).eval().double()  # predictions in float64: independent of batch size
        return self

    def _train(self, net, inputs, targets, train_idx, val_idx):
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.learning_rate_init, weight_decay=self.weight_decay)
        loss_of = nn.functional.binary_cross_entropy_with_logits
        self.loss_curve_, self.validation_loss_curve_ = [], []
        stopper = EarlyStopping(self.tol, self.n_iter_no_change, self.early_stopping, keep_best=val_idx is not None)
        train_idx = torch.as_tensor(train_idx)
        for epoch in range(self.max_iter):
            net.train()
            shuffled = train_idx[torch.randperm(len(train_idx))]
            total = 0.0
            for start in range(0, len(shuffled), self.batch_size):
                batch = shuffled[start : start + self.batch_size]
                if len(batch) < 2:  # BatchNorm cannot train on one record
                    continue
                optimizer.zero_grad()
                loss = loss_of(net(inputs[batch]), targets[batch])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            self.loss_curve_.append(total / max(len(shuffled), 1))
            self.n_iter_ = epoch + 1
            monitored = self.loss_curve_[-1]
            if val_idx is not None:
                net.eval()
                with torch.no_grad():
                    monitored = float(loss_of(net(inputs[val_idx]), targets[val_idx]))
                self.validation_loss_curve_.append(monitored)
            if stopper.stop(monitored, net):
                break
        stopper.restore(net)

    def decision_function(self, X):
        """Logits, ``(n_samples, n_labels)`` (``(n_samples,)`` for binary targets)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with torch.no_grad():
            logits = self._network(torch.from_numpy(np.array(X))).numpy()
        return logits[:, 0] if self._binary else logits

    def predict_proba(self, X):
        """Per-label probabilities (multi-label), or both columns for binary targets."""
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p]) if self._binary else p

    def predict(self, X):
        """Labels: an indicator matrix (multi-label) or the classes."""
        p = self.predict_proba(X)
        return self.classes_[np.argmax(p, axis=1)] if self._binary else (p > 0.5).astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.non_deterministic = False
        return tags
