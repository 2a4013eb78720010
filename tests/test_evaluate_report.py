"""``ecgsoup evaluate`` output a clinician can publish (issue 25).

Was: the headline was the best of 13 rows scored on the folds that chose it;
no predictions, ROC, sensitivity/specificity, interval or methods text;
``--target age`` became a 33-class problem; a two-value column made the larger
class positive; PMA ran by default on 60 records.  The store holds the 30 real
PTB-XL records of the shared sample, embedded by an untrained 2-block encoder.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgsoup.cli import EXIT_OK, EXIT_USAGE, main
from ecgsoup.evaluate import layer_probe
from ecgsoup.metrics import class_aucs
from ecgsoup.nested import bootstrap_interval, nested_probe, target_kind
from ecgsoup.store import embed_to_store, open_store

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def store(shared_data, tmp_path_factory):
    from ecgsoup.backbones.stmem import get_config, random_model

    config = get_config("ecgsoup-100hz-tiny").replace(name="test-100hz-2blocks", depth=2)
    path = tmp_path_factory.mktemp("store") / "ptbxl.npz"
    embed_to_store(shared_data / "ptbxl_sample", path, model=random_model(config, seed=1))
    return path


@pytest.fixture(scope="module")
def labels_csv(shared_data, tmp_path_factory):
    """The sample's labels with a record_id column and a 'hypertrophy' column (empty: none)."""
    table = pd.read_csv(shared_data / "ptbxl_sample" / "labels.csv", dtype=str, keep_default_na=False)
    table.insert(0, "record_id", table["ecg_id"])
    table["hypertrophy"] = ["HYP" if "HYP" in cell else "" for cell in table["challenge2024_labels"]]
    table["diagnosis"] = ["normal" if "NORM" in cell else "abnormal" for cell in table["challenge2024_labels"]]
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    table.drop(columns=["strat_fold"]).to_csv(path, index=False)
    return path


def _run(store, labels_csv, *options):
    if "--out" not in options or "sex" not in options:  # the clinical baseline is tested once
        options = ("--clinical", "none", *options)
    return main(["evaluate", str(store), "--labels", str(labels_csv), "--cv", "3", "--bootstrap", "50", *options])


def test_binary_report_files_and_an_honest_headline(store, labels_csv, tmp_path, capsys):
    out = tmp_path / "report"
    status = _run(store, labels_csv, "--target", "sex", "--positive", "Male", "--threshold", "0.5", "--out", str(out))
    printed = capsys.readouterr().out
    assert status == EXIT_OK
    assert re.search(r"nested CV verdict: ROC AUC 0\.\d{4} \[95 % CI 0\.\d{4}, 0\.\d{4}\]", printed)
    assert "chosen on these folds (optimistic)" in printed
    assert "PMA left out: 30 records" in printed and "it runs from 300 records" in printed
    assert "clinical baseline: 26 clinical features from 30 records" in printed  # the records read again
    assert len(re.findall(r"^fold \d/3: 20 training records, chosen layer_\d\d|^fold \d/3: .* chosen ppa",
                          printed, re.MULTILINE)) == 3  # fmt: skip
    assert "at Youden threshold chosen inside each training fold: sensitivity" in printed
    assert "at threshold 0.5: sensitivity" in printed
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 30 and set(predictions["fold"]) == {1, 2, 3}
    assert {"record_id", "label", "chosen_representation", "chosen", "layer_00", "layer_02", "ppa",
            "clinical features"} <= set(predictions)
    assert predictions["label"].sum() == 17  # 17 men
    # The chosen score of each record is the score of the representation chosen for its fold.
    for _, row in predictions.iterrows():
        assert row["chosen"] == pytest.approx(row[row["chosen_representation"]])
    points = pd.read_csv(out / "operating_points.csv", index_col=0)
    assert list(points.index) == ["Youden threshold chosen inside each training fold", "threshold 0.5"]
    assert (points["sensitivity_low"] <= points["sensitivity"]).all()
    assert (points["sensitivity"] <= points["sensitivity_high"]).all()
    methods = (out / "methods.md").read_text()
    sha = open_store(store).attrs["model_sha256"]
    from ecgsoup import __version__

    for needed in (sha, f"ecgsoup {__version__}", "C = 1", "3-fold inner cross-validation", "percentile bootstrap",
                   "50 resamples", "resampled to 100 Hz", "Youden"):  # fmt: skip
        assert needed in methods, needed
    for name in ("roc.png", "layer_probe.png", "layer_probe.csv", "verdict.csv"):
        assert (out / name).stat().st_size > 0


def test_cli_and_python_give_the_same_numbers(store, labels_csv, tmp_path, capsys):
    out = tmp_path / "cli"
    assert _run(store, labels_csv, "--target", "hypertrophy", "--task", "binary", "--fusions", "ppa",
                "--out", str(out)) == EXIT_OK  # fmt: skip
    capsys.readouterr()
    cli = pd.read_csv(out / "verdict.csv", index_col=0)
    cli_table = pd.read_csv(out / "layer_probe.csv", index_col=0)
    # The documented snippet, run as written on this store and labels table.
    page = (DOCS / "your-labels.md").read_text(encoding="utf-8")
    snippet = next(b for b in re.findall(r"^```python\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
                   if "nested_probe(" in b)  # fmt: skip
    snippet = snippet.replace('"ludb-embeddings.npz"', repr(str(store))).replace('"labels.csv"', repr(str(labels_csv)))
    snippet = snippet.replace("cv=5", "cv=3").replace("random_state=0)", "random_state=0, n_bootstrap=50)")
    namespace = {"pd": pd}
    exec(compile(snippet, "your-labels.md nested_probe snippet", "exec"), namespace)
    result = namespace["result"]
    assert result.headline == pytest.approx(tuple(cli.loc["ROC AUC", ["value", "low", "high"]]), abs=1e-9)
    assert np.allclose(result.table["mean"], cli_table["mean"])
    # And layer_probe, the documented per-layer route, gives the same per-layer numbers.
    stored = open_store(store)
    direct = layer_probe(stored.X, namespace["y_any"], cv=3, fusions=("ppa",), layer_spec=stored.layer_spec,
                         random_state=0)  # fmt: skip
    assert np.allclose(direct["mean"], result.table["mean"]) and np.allclose(direct["std"], result.table["std"])


def test_age_is_a_regression_with_r2_mae_and_a_calibration_plot(store, labels_csv, tmp_path, capsys):
    out = tmp_path / "age"
    assert _run(store, labels_csv, "--target", "age", "--fusions", "none", "--out", str(out)) == EXIT_OK
    printed = capsys.readouterr().out
    assert "task: regression on --target 'age'" in printed
    assert re.search(r"nested CV verdict: R² -?\d\.\d{4} \[95 % CI", printed)
    assert re.search(r"MAE \d+\.\d{4} \[95 % CI", printed)
    assert (out / "calibration.png").stat().st_size > 0 and not (out / "roc.png").exists()
    predictions = pd.read_csv(out / "predictions.csv")
    ages = pd.read_csv(labels_csv).set_index("record_id").loc[predictions["record_id"], "age"]
    assert np.allclose(predictions["label"], ages)
    # Python: layer_probe reads the same column as regression (R² per fold), never as 21 classes.
    stored = open_store(store)
    assert target_kind(ages.to_numpy()) == "regression"
    table = layer_probe(stored.X, ages.to_numpy(), cv=3, fusions=(), layer_spec=stored.layer_spec, random_state=0)
    assert list(table.index) == ["layer_00", "layer_01", "layer_02"] and (table["mean"] < 1).all()
    # An anonymised ceiling such as LUDB's ">89" is the number it bounds, not a reason to read 33 classes.
    censored = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    censored.loc[0, "age"] = ">89"
    censored.to_csv(tmp_path / "censored.csv", index=False)
    assert _run(store, tmp_path / "censored.csv", "--target", "age", "--fusions", "none") == EXIT_OK
    printed = capsys.readouterr().out
    assert "task: regression" in printed and "bounds: 1 cells such as '>89' are read as their number (89)" in printed


def test_two_values_need_positive_unless_one_is_an_obvious_negative(store, labels_csv, capsys):
    assert _run(store, labels_csv, "--target", "sex", "--fusions", "none") == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "two values, 'Female' (13 records) and 'Male' (17)" in err and "--positive 'Male'" in err
    assert _run(store, labels_csv, "--target", "diagnosis", "--fusions", "none") == EXIT_OK
    assert "positive: diagnosis == 'abnormal'" in capsys.readouterr().out


def test_min_count_drops_rare_labels_and_says_which(store, shared_data, capsys):
    labels = shared_data / "ptbxl_sample" / "labels.csv"
    assert main(["evaluate", str(store), "--labels", str(labels), "--target", "challenge2024_labels",
                 "--fusions", "none", "--min-count", "5", "--bootstrap", "20", "--folds", "none", "--cv", "3",
                 "--inner-cv", "2", "--clinical", "none"]) == EXIT_OK  # fmt: skip
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "--min-count 5: dropped" in line)
    table = pd.read_csv(labels, dtype=str, keep_default_na=False)["challenge2024_labels"]
    counts = pd.Series([p.strip() for cell in table for p in cell.split(",") if p.strip()]).value_counts()
    rare = counts[counts < 5]
    assert f"dropped {len(rare)} rare labels" in line
    assert all(f"{name} {n}" in line for name, n in rare.items())


def test_a_semicolon_separated_csv_names_the_fix(store, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("record_id;y\n841;a\n1612;b\n")
    assert main(["evaluate", str(store), "--labels", str(tmp_path / "labels.csv"), "--target", "y"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "semicolon-separated" in err and "sep=';'" in err


def test_output_clash_is_refused_before_computing(store, labels_csv, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "roc.png").mkdir(parents=True)
    assert _run(store, labels_csv, "--target", "age", "--out", str(out)) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "roc.png there is a folder" in captured.err and "task:" not in captured.out


def test_bootstrap_matches_a_plain_loop_over_the_same_resamples():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 40)
    s = y + rng.normal(0, 1.2, 40)
    Y = y[:, None].astype(float)
    from sklearn.metrics import roc_auc_score

    def vectorised(draws):
        return class_aucs(Y[draws], s[:, None][draws])[:, 0]

    low, high = bootstrap_interval(vectorised, 40, n_bootstrap=300, random_state=7)
    draws = np.random.default_rng(7).integers(0, 40, size=(300, 40))
    loop = [roc_auc_score(y[d], s[d]) for d in draws if 0 < y[d].sum() < 40]
    assert (low, high) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])))
    assert low < roc_auc_score(y, s) < high


def test_nested_choice_never_sees_the_test_fold():
    """With an informative layer and a noise layer, inner CV picks the informative one in every fold,
    and the nested verdict is the pooled out-of-fold AUC of the rows it chose."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    good = y[:, None] + rng.normal(0, 0.8, (60, 4))
    noise = rng.normal(0, 1, (60, 4))
    result = nested_probe(np.hstack([noise, good]), y, cv=3, n_layers=2, fusions=(), n_bootstrap=100)
    assert result.chosen == ["layer_01"] * 3
    assert result.headline[0] == pytest.approx(result.table.loc["layer_01", "pooled"])
    assert result.headline[1] < result.headline[0] < result.headline[2]


def test_hybrid_features_take_a_fusion():
    """hybrid_features(features, "ppa") or a fusion instance: PPA of the layers beside the clinical block."""
    from ecgsoup import ECGFeatures, load_sample
    from ecgsoup.fusion import PPA
    from ecgsoup.hybrid import embedding_block, hybrid_features

    ludb = load_sample()
    features = ECGFeatures(sampling_rate=ludb.sampling_rate, lead_names=ludb.lead_names, units="normalized")
    union = hybrid_features(features, "ppa")
    assert isinstance(union.transformer_list[1][1].named_steps["encoder"].named_steps["embed"].fusion, PPA)
    block = embedding_block(ludb.sampling_rate, ludb.lead_names, model="random:ecgsoup-100hz-tiny", layers=PPA())
    Z = hybrid_features(features, block).fit_transform(ludb.X[:6])
    assert Z.shape == (6, 14 + 192) and np.isfinite(Z).all()
    with pytest.raises(ValueError, match="'default', 'ppa', a fusion"):
        hybrid_features(features, "pma")


def test_a_ragged_list_of_records_names_the_fix():
    from ecgsoup import load_sample
    from ecgsoup.embedding import LayerwiseEmbedder
    from ecgsoup.preprocessing import ECGPreprocessor

    ludb = load_sample()
    ragged = [ludb.X[0], ludb.X[1][:900]]
    for step in (ECGPreprocessor(sampling_rate=ludb.sampling_rate, lead_names=ludb.lead_names),
                 LayerwiseEmbedder(model="random:ecgsoup-100hz-tiny")):  # fmt: skip
        with pytest.raises(ValueError, match=r"list of 2 records of 2 different shapes .*read_dataset\(path, length=N\)"):
            step.fit_transform(ragged)
