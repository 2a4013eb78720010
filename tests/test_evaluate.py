"""macro_auc (spec 4.2), layer_probe and plot_layer_probe (spec 5.1) on LUDB."""

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup import PMA, PPA, LayerSelector
from ecgsoup.evaluate import layer_probe, macro_auc, macro_auc_scorer, plot_layer_probe
from ecgsoup.layers import LayerInfo, LayerSpec, Readout

N_LAYERS, DIM = 13, 192


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _age(labels):
    """Age in years as a real-valued score (LUDB writes the oldest as '>89')."""
    age = pd.to_numeric(labels["age"].astype(str).str.lstrip(">"), errors="coerce")
    return age.fillna(age.median()).to_numpy(dtype=float)


# -- macro_auc ------------------------------------------------------------------------------
def test_binary_and_multilabel_match_sklearn_when_defined(labels):
    age = _age(labels)
    y = labels["hypertrophy"].notna().to_numpy()
    assert macro_auc(y, age) == pytest.approx(roc_auc_score(y, age))
    assert macro_auc(y, np.column_stack([-age, age])) == pytest.approx(roc_auc_score(y, age))
    Y = labels[["hypertrophy", "conduction", "ischemia"]].notna().astype(int).to_numpy()
    scores = np.column_stack([age, -age, age / 2 + labels["record_id"]])
    assert macro_auc(Y, scores) == pytest.approx(roc_auc_score(Y, scores, average="macro"))


def test_multiclass_is_one_vs_rest_macro(labels):
    y = labels["axis"].fillna("none").to_numpy()
    classes = np.unique(y)
    age = _age(labels)
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(len(classes)), size=len(y)) + 0.01 * age[:, None] * (y[:, None] == classes)
    scores /= scores.sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, scores, multi_class="ovr", average="macro", labels=classes)
    assert macro_auc(y, scores) == pytest.approx(expected)
    assert macro_auc(y, scores, labels=classes) == pytest.approx(expected)


def test_classes_without_both_labels_count_as_half(labels):
    rhythm = labels["rhythm_primary"].to_numpy()
    classes = np.unique(rhythm)  # 7 classes
    afib = rhythm == "Atrial fibrillation"
    subset = ~np.isin(rhythm, ["Atrial flutter, typical", "Irregular sinus rhythm"])  # two classes absent
    scores = np.tile(np.linspace(0, 1, len(classes)), (subset.sum(), 1))
    scores[:, list(classes).index("Atrial fibrillation")] = afib[subset]  # a perfect AF column
    with pytest.warns(UndefinedMetricWarning, match="2 of 7 classes"):
        value = macro_auc(rhythm[subset], scores, labels=classes)
    # AF: 1.0; four present classes with a constant column: 0.5; two absent classes: 0.5
    assert value == pytest.approx((1.0 + 6 * 0.5) / 7)
    with pytest.raises(ValueError, match="labels="):
        macro_auc(rhythm[subset], scores)
    unpaced = labels[labels["pacing"].isna()].head(20)  # a split where nobody has a pacemaker
    Y = unpaced[["hypertrophy", "pacing"]].notna().astype(int).to_numpy()
    assert Y[:, 0].min() == 0 and Y[:, 0].max() == 1 and Y[:, 1].sum() == 0
    with pytest.warns(UndefinedMetricWarning):
        assert macro_auc(Y, np.column_stack([Y[:, 0], np.zeros(20)])) == pytest.approx(0.75)


def test_scorer_handles_classes_missing_from_a_fold(X_layers, labels, tiny_spec):
    y = labels["rhythm_primary"].to_numpy()
    clf = Pipeline([("select", LayerSelector(layers=6, layer_spec=tiny_spec)), ("scale", StandardScaler()), ("lr", LogisticRegression(C=0.1, max_iter=500))])
    train = ~np.isin(y, ["Atrial flutter, typical"])  # the model never sees flutter
    clf.fit(X_layers[train], y[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        score = macro_auc_scorer(clf, X_layers, y)
    assert 0.5 < score <= 1.0


# -- layer_probe ---------------------------------------------------------------------------
def test_layer_probe_hypertrophy_table_matches_cross_val(X_layers, labels, tiny_spec):
    y = labels["hypertrophy"].notna().to_numpy()
    fusions = {"ppa": PPA(layer_spec=tiny_spec), "pma": PMA(max_iter=5, random_state=0, layer_spec=tiny_spec)}
    result = layer_probe(X_layers, y, cv=3, fusions=fusions, layer_spec=tiny_spec, random_state=0)
    assert list(result.index) == [f"layer_{i:02d}" for i in range(13)] + ["ppa", "pma"]
    assert list(result.columns) == ["mean", "std", "fold_0", "fold_1", "fold_2"]
    folds = result[["fold_0", "fold_1", "fold_2"]]
    np.testing.assert_allclose(result["mean"], folds.mean(axis=1))
    assert result["mean"].between(0, 1).all() and result["mean"].nunique() > 5
    # row layer_07 is exactly the standard pipeline scored on the same folds
    pipe = Pipeline(
        [("select", LayerSelector(layers=7, layer_spec=tiny_spec)), ("probe", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)))]
    )  # fmt: skip
    by_hand = cross_val_score(
        pipe, X_layers, y, cv=RepeatedStratifiedKFold(n_splits=3, n_repeats=1, random_state=0), scoring=macro_auc_scorer
    )
    np.testing.assert_allclose(folds.loc["layer_07"], by_hand)


def test_layer_probe_multilabel_and_repeats(X_layers, labels):
    Y = labels[["hypertrophy", "conduction"]].notna().astype(int).to_numpy()
    result = layer_probe(X_layers[:, : 4 * DIM], Y, n_layers=4, cv=2, n_repeats=2, fusions=("ppa",), random_state=1)
    assert list(result.index) == ["layer_00", "layer_01", "layer_02", "layer_03", "ppa"]
    assert [c for c in result.columns if c.startswith("fold_")] == ["fold_0", "fold_1", "fold_2", "fold_3"]
    with pytest.raises(ValueError, match="Unknown fusion"):
        layer_probe(X_layers, Y, fusions=("mean",))


def test_layer_probe_reads_the_layers_through_the_spec(X_layers, labels, tiny_spec):
    """Named fusions and every layer row get the spec: the model's readout is applied in each."""
    y = labels["hypertrophy"].notna().to_numpy()
    result = layer_probe(X_layers, y, cv=2, fusions=("ppa",), layer_spec=tiny_spec, random_state=0)
    folds = RepeatedStratifiedKFold(n_splits=2, n_repeats=1, random_state=0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    for row, step in (("layer_03", LayerSelector(layers=3, layer_spec=tiny_spec)), ("ppa", PPA(layer_spec=tiny_spec))):
        by_hand = cross_val_score(Pipeline([("represent", step), ("probe", probe)]), X_layers, y, cv=folds,
                                  scoring=macro_auc_scorer)  # fmt: skip
        np.testing.assert_allclose(result.loc[row, ["fold_0", "fold_1"]].to_numpy(dtype=float), by_hand)
    # without the spec the rows are raw blocks (no readout): other numbers
    raw = layer_probe(X_layers, y, cv=2, fusions=("ppa",), random_state=0)
    assert not np.allclose(raw.loc["ppa", "mean"], result.loc["ppa", "mean"], atol=1e-4)


def test_layer_probe_on_layers_of_different_widths_uses_a_balanced_row(X_layers, labels, tiny_spec):
    y = labels["hypertrophy"].notna().to_numpy()
    stages = (LayerInfo("stem", 96, "stem"), LayerInfo("stage1", 96, "stage1")) + tuple(
        LayerInfo(f"stage{i}", DIM, f"stage{i}") for i in range(2, 14)
    )
    spec = LayerSpec("c" * 64, stages, Readout(), "toy-cnn")
    with pytest.warns(UserWarning, match="toy-cnn have different widths or streams, so PPA and PMA do not apply"):
        result = layer_probe(X_layers, y, cv=2, layer_spec=spec, random_state=0)
    assert list(result.index) == [f"layer_{i:02d}" for i in range(14)] + ["all_balanced"]
    assert result["mean"].between(0, 1).all()
    by_hand = cross_val_score(
        Pipeline([("represent", LayerSelector(layers="all", balance=True, layer_spec=spec)),
                  ("probe", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)))]),
        X_layers, y, cv=RepeatedStratifiedKFold(n_splits=2, n_repeats=1, random_state=0), scoring=macro_auc_scorer,
    )  # fmt: skip
    np.testing.assert_allclose(result.loc["all_balanced", ["fold_0", "fold_1"]].to_numpy(dtype=float), by_hand)


def test_plot_layer_probe_writes_a_figure(X_layers, labels, tiny_spec, tmp_path):
    y = labels["hypertrophy"].notna().to_numpy()
    result = layer_probe(X_layers, y, cv=2, fusions=("ppa",), layer_spec=tiny_spec, random_state=0)
    path = tmp_path / "probe.png"
    figure = plot_layer_probe(result, path=path)
    assert isinstance(figure, matplotlib.figure.Figure)
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
    ax = figure.axes[0]
    assert len(ax.lines) >= 2 and list(ax.get_xticks()) == list(range(13))
    assert any("PPA" in text.get_text() for text in ax.get_legend().get_texts())
    other = matplotlib.figure.Figure()
    axes = other.subplots()
    assert plot_layer_probe(result, ax=axes) is other
    with pytest.raises(ValueError, match="mean"):
        plot_layer_probe(result.drop(columns="mean"))
