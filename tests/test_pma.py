"""PMA and PMAClassifier (spec 3.4, 3.5) on real LUDB embeddings, read through the tiny model's LayerSpec.

(The sklearn estimator checks for both live in test_fusion.py, with the other fusions.)
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from ecgsoup import PMA, PMAClassifier
from ecgsoup.evaluate import macro_auc

N_LAYERS, DIM = 13, 192


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hypertrophy(labels):
    return labels["hypertrophy"].notna().to_numpy()


def _with_signal_in_layer(X, y, layer, strength=0.5):
    """Real embeddings, but block ``layer`` gets a shift along one direction by the label."""
    H = X.reshape(len(X), N_LAYERS, DIM).copy()
    direction = np.random.default_rng(0).normal(size=DIM)
    direction /= np.linalg.norm(direction)
    size = strength * np.linalg.norm(H[:, layer] - H[:, layer].mean(axis=0), axis=1).mean()
    H[:, layer] += size * np.where(y, 1.0, -1.0)[:, None] * direction
    return H.reshape(len(X), -1).astype(np.float32)


FAST = dict(max_iter=60, learning_rate_init=1e-2, early_stopping=False, random_state=0)


@pytest.mark.parametrize("layer", [4, 9])
def test_gate_concentrates_on_the_informative_layer(X_layers, hypertrophy, tiny_spec, layer):
    X = _with_signal_in_layer(X_layers, hypertrophy, layer)
    trained = PMAClassifier(**FAST, layer_spec=tiny_spec).fit(X, hypertrophy)
    frozen = PMAClassifier(**FAST, train_gate=False, layer_spec=tiny_spec).fit(X, hypertrophy)
    initial = frozen.gate_weights_["mean"]
    # the frozen gate is the random init: close to uniform, no preference for the layer
    assert initial.max() < 0.2 and initial.idxmax() != f"layer{layer:02d}"
    weights = trained.gate_weights_["mean"]
    assert weights.idxmax() == f"layer{layer:02d}" and weights.max() > 0.5
    assert np.abs(weights - initial).max() > 0.3
    per_sample = trained.gate_weights(X)
    assert per_sample.shape == (200, 12)
    np.testing.assert_allclose(per_sample.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(per_sample.mean(axis=0), weights.to_numpy(), rtol=1e-5)


def test_train_gate_false_leaves_the_gate_at_init(X_layers, hypertrophy, tiny_spec):
    one = PMAClassifier(max_iter=1, train_gate=False, random_state=3, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    many = PMAClassifier(max_iter=20, train_gate=False, random_state=3, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    np.testing.assert_allclose(one.gate_weights(X_layers), many.gate_weights(X_layers), atol=1e-6)
    trained = PMAClassifier(max_iter=20, random_state=3, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    assert not np.allclose(trained.gate_weights(X_layers), many.gate_weights(X_layers), atol=1e-4)


def test_pma_transform_is_the_normed_gate_mixture(X_layers, hypertrophy, tiny_model, tiny_spec):
    pma = PMA(max_iter=10, random_state=0, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    assert pma.layers_ == tuple(range(1, 13)) and pma.dim_ == DIM and pma.layer_spec_ is tiny_spec
    assert pma.gate_weights_.index.tolist() == [f"layer{i:02d}" for i in range(1, 13)]
    w = pma.gate_weights(X_layers[:30])
    H = X_layers[:30].reshape(30, N_LAYERS, DIM)
    mixed = np.einsum("nl,nld->nd", w, H[:, 1:])
    with torch.no_grad():
        expected = tiny_model.norm(torch.from_numpy(mixed.astype(np.float32))).numpy()
    out = pma.transform(X_layers[:30])
    assert out.shape == (30, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert pma.get_feature_names_out()[3] == "pma_dim0003"
    frame = clone(pma).set_output(transform="pandas").fit(X_layers, hypertrophy).transform(X_layers[:5])
    assert list(frame.columns[:2]) == ["pma_dim0000", "pma_dim0001"]
    # layer_spec=None: the same gate mixture of raw blocks, with no readout
    raw = PMA(max_iter=10, random_state=0).fit(X_layers, hypertrophy)
    mixed_raw = np.einsum("nl,nld->nd", raw.gate_weights(X_layers[:30]), H[:, 1:])
    np.testing.assert_allclose(raw.transform(X_layers[:30]), mixed_raw, rtol=1e-4, atol=1e-5)
    assert not np.allclose(raw.transform(X_layers[:30]), out, atol=1e-2)
    # a subset of the layers: the gate weighs only those
    some = PMA(layers=[3, 6, 9], max_iter=3, random_state=0, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    assert some.layers_ == (3, 6, 9) and some.gate_weights(X_layers[:30]).shape == (30, 3)
    mixed_some = np.einsum("nl,nld->nd", some.gate_weights(X_layers[:30]), H[:, [3, 6, 9]])
    with torch.no_grad():
        expected_some = tiny_model.norm(torch.from_numpy(mixed_some.astype(np.float32))).numpy()
    np.testing.assert_allclose(some.transform(X_layers[:30]), expected_some, atol=1e-4)


def test_pma_in_a_pipeline_cross_validates(X_layers, hypertrophy, tiny_spec):
    pipe = Pipeline([("pma", PMA(max_iter=10, random_state=0, layer_spec=tiny_spec)), ("clf", LogisticRegression(C=0.1, max_iter=500))])
    scores = cross_val_score(pipe, X_layers, hypertrophy, cv=StratifiedKFold(3, shuffle=True, random_state=0), scoring="roc_auc")
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_binary_outputs_and_determinism(X_layers, hypertrophy, tiny_spec):
    before = torch.get_rng_state()
    a = PMAClassifier(max_iter=8, random_state=7, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    assert torch.equal(before, torch.get_rng_state())  # the global torch RNG is untouched
    b = PMAClassifier(max_iter=8, random_state=7, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    np.testing.assert_array_equal(a.predict_proba(X_layers), b.predict_proba(X_layers))
    c = PMAClassifier(max_iter=8, random_state=8, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    assert not np.allclose(a.predict_proba(X_layers), c.predict_proba(X_layers))
    proba, logit = a.predict_proba(X_layers), a.decision_function(X_layers)
    assert proba.shape == (200, 2) and logit.shape == (200,)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-logit)))
    assert set(a.predict(X_layers)) <= {False, True} and list(a.classes_) == [False, True]
    assert a.n_iter_ == len(a.loss_curve_) <= 8


def test_multiclass_rhythm(X_layers, labels, tiny_spec):
    y = labels["rhythm_primary"].to_numpy()
    clf = PMAClassifier(head="mlp", hidden=32, max_iter=15, random_state=0, layer_spec=tiny_spec).fit(X_layers, y)
    assert len(clf.classes_) == 7 and clf.decision_function(X_layers).shape == (200, 7)
    proba = clf.predict_proba(X_layers)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X_layers)) <= set(clf.classes_)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]  # cross-entropy goes down


def test_multilabel_on_ludb_columns(X_layers, labels, tiny_spec):
    columns = ["hypertrophy", "conduction", "ischemia", "repolarization"]
    Y = labels[columns].notna().astype(int).to_numpy()
    clf = PMAClassifier(max_iter=40, learning_rate_init=3e-3, early_stopping=False, random_state=0,
                        layer_spec=tiny_spec).fit(X_layers, Y)  # fmt: skip
    proba = clf.predict_proba(X_layers)
    assert proba.shape == (200, 4) and np.all((proba >= 0) & (proba <= 1))
    pred = clf.predict(X_layers)
    assert pred.shape == (200, 4) and pred.dtype == Y.dtype
    assert list(clf.classes_) == [0, 1, 2, 3]
    assert macro_auc(Y, proba) > 0.7  # fitted on these records: the labels are learnt


def test_early_stopping_keeps_a_validation_curve(X_layers, hypertrophy, tiny_spec):
    clf = PMAClassifier(max_iter=200, n_iter_no_change=3, early_stopping=True, random_state=0,
                        layer_spec=tiny_spec).fit(X_layers, hypertrophy)  # fmt: skip
    assert len(clf.validation_loss_curve_) == clf.n_iter_ < 200


def test_bad_targets_and_inputs_are_explained(X_layers, hypertrophy, tiny_spec):
    with pytest.raises(ValueError, match="Unknown label type"):
        PMAClassifier(max_iter=1, layer_spec=tiny_spec).fit(X_layers, np.linspace(0, 1, 200))
    with pytest.raises(ValueError, match="at least 2 classes"):
        PMA(max_iter=1, layer_spec=tiny_spec).fit(X_layers, np.ones(200))
    with pytest.raises(ValueError, match="2304 feature.*not 13 layer blocks of equal width.*layer_spec=embedder.layer_spec_"):
        PMAClassifier(max_iter=1).fit(X_layers[:, : 12 * DIM], hypertrophy)
    with pytest.raises(ValueError, match="2304 columns but layer_spec describes 2496"):
        PMAClassifier(max_iter=1, layer_spec=tiny_spec).fit(X_layers[:, : 12 * DIM], hypertrophy)
    with pytest.raises(ValueError, match="n_layers"):
        PMA(max_iter=1, n_layers=1).fit(X_layers, hypertrophy)
    with pytest.raises(ValueError, match="device"):
        PMAClassifier(max_iter=1, device="tpu-please", layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    fitted = PMAClassifier(max_iter=1, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X_layers[:, : 12 * DIM])


def test_small_data_turns_early_stopping_off_with_a_warning(X_layers, hypertrophy, tiny_spec):
    """30 records: a 10 % hold-out is 3 records, which once kept an almost untrained head (AUC 0.38)."""
    with pytest.warns(UserWarning, match="at least 20 are needed .* so early stopping is off"):
        clf = PMAClassifier(early_stopping=True, max_iter=30, random_state=0,
                            layer_spec=tiny_spec).fit(X_layers[:30], hypertrophy[:30])  # fmt: skip
    assert clf.validation_loss_curve_ == [] and clf.n_iter_ >= 1


def test_untrained_head_and_uniform_gate_are_reported(X_layers, hypertrophy, tiny_spec):
    with pytest.warns(UserWarning) as record:
        PMAClassifier(max_iter=1, learning_rate_init=1e-9, random_state=0, layer_spec=tiny_spec).fit(X_layers, hypertrophy)
    messages = " ".join(str(w.message) for w in record)
    assert "the head barely moved from its initialisation" in messages
    assert "the gate stayed uniform" in messages


def test_parameter_names_follow_mlpclassifier():
    from sklearn.neural_network import MLPClassifier

    ours, theirs = PMAClassifier().get_params(), MLPClassifier().get_params()
    for name in ("max_iter", "learning_rate_init", "early_stopping", "validation_fraction",
                 "n_iter_no_change", "tol", "batch_size", "random_state", "verbose"):  # fmt: skip
        assert name in ours
    assert ours["early_stopping"] == theirs["early_stopping"] is False
    assert ours["validation_fraction"] == theirs["validation_fraction"]
    assert ours["n_iter_no_change"] == theirs["n_iter_no_change"] and ours["tol"] == theirs["tol"]
    # the layers are described by a LayerSpec; no model constants are passed as parameters
    assert ours["layer_spec"] is None and ours["n_layers"] == 13 and "norm" not in ours
