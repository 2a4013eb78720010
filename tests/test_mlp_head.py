"""The ECG-Soup MLP head as a classifier on a fixed representation."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgsoup.mlp_head import MLPHeadClassifier


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    Y = (X[:, :3] + 0.5 * rng.normal(size=(400, 3)) > 0.8).astype(int)
    return X, Y


def test_multi_label_head_learns_and_repeats_itself(data):
    X, Y = data
    first = MLPHeadClassifier(max_iter=30, random_state=0).fit(X[:300], Y[:300])
    proba = first.predict_proba(X[300:])
    assert proba.shape == (100, 3) and ((proba >= 0) & (proba <= 1)).all()
    assert min(roc_auc_score(Y[300:, k], proba[:, k]) for k in range(3)) > 0.8
    assert first.validation_loss_curve_ and first.n_iter_ <= 30
    again = MLPHeadClassifier(max_iter=30, random_state=0).fit(X[:300], Y[:300])
    np.testing.assert_array_equal(again.predict_proba(X[300:]), proba)
    assert first.predict(X[300:]).shape == (100, 3)


def test_binary_labels_give_two_columns(data):
    X, Y = data
    y = np.where(Y[:, 0] == 1, "yes", "no")
    model = MLPHeadClassifier(max_iter=5, random_state=1).fit(X, y)
    assert list(model.classes_) == ["no", "yes"] and model.predict_proba(X).shape == (400, 2)
    assert set(model.predict(X)) <= {"no", "yes"}


def test_more_than_two_classes_are_refused(data):
    X, _ = data
    with pytest.raises(ValueError, match="binary or 0/1 indicator"):
        MLPHeadClassifier(max_iter=2).fit(X, np.arange(len(X)) % 3)
