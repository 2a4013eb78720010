"""The PTB-XL benchmark: task construction, the metric, both data layouts, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ecgsoup.benchmark import class_aucs, load_ptbxl_benchmark_data, ptbxl, resample_class_aucs
from ecgsoup.cli import main
from ecgsoup.tasks import (
    PTBXL_TASKS,
    bundled_scp_statements,
    parse_scp_codes,
    ptbxl_task_classes,
    ptbxl_task_labels,
)

# Challenge-2024 superclass labels of the 30 sample records -> one real SCP code each, so that
# the test can write a ptbxl_database.csv in PTB-XL's own format for the WFDB files.
_CODE_FOR = {"NORM": "NORM", "Old MI": "IMI", "STTC": "NDT", "CD": "CLBBB", "HYP": "LVH",
             "PVC": "PVC", "PAC": "PAC", "TACHY": "STACH"}  # fmt: skip


@pytest.fixture(scope="module")
def subset(shared_data):
    return shared_data / "ptbxl_zscored_subset"


@pytest.fixture
def ptbxl_download(shared_data, tmp_path):
    """A PTB-XL download layout: the sample's records100/ + a ptbxl_database.csv we write."""
    sample = shared_data / "ptbxl_sample"
    root = tmp_path / "ptb-xl"
    root.mkdir()
    (root / "records100").symlink_to(sample / "records100")
    shutil.copy(sample / "scp_statements.csv", root)
    labels = pd.read_csv(sample / "labels.csv")
    codes = []
    for cell in labels["challenge2024_labels"]:
        record = {_CODE_FOR[name.strip()]: 100.0 for name in cell.split(",")}
        record["SR"] = 0.0  # likelihood 0 still counts, as in the standard benchmark
        codes.append(str(record))
    database = pd.DataFrame({"ecg_id": labels["ecg_id"], "patient_id": labels["ecg_id"] + 10000,
                             "scp_codes": codes, "strat_fold": labels["strat_fold"],
                             "filename_lr": labels["filename_lr"], "filename_hr": labels["filename_hr"]})  # fmt: skip
    database.to_csv(root / "ptbxl_database.csv", index=False)
    return root


def test_six_tasks_have_the_standard_sizes():
    classes = ptbxl_task_classes(bundled_scp_statements())
    assert {task: len(c) for task, c in classes.items()} == PTBXL_TASKS == {
        "all": 71, "diag": 44, "sub": 23, "super": 5, "form": 19, "rhythm": 12}  # fmt: skip


def test_task_labels_match_known_facts(subset):
    labels = pd.read_csv(subset / "labels.csv")
    assert len(labels) == 1625 and set(labels["strat_fold"]) == set(range(1, 10))
    codes = [parse_scp_codes(c) for c in labels["scp_codes"]]
    statements = bundled_scp_statements()
    sup = ptbxl_task_labels(codes, statements, "super")
    counts = pd.Series([c for record in sup for c in record]).value_counts().to_dict()
    assert counts == {"NORM": 877, "STTC": 461, "CD": 406, "MI": 228, "HYP": 174}
    i = int(np.flatnonzero(labels["ecg_id"] == 24)[0])
    assert sup[i] == ["NORM"]
    assert "SR" in ptbxl_task_labels(codes, statements, "rhythm")[i]
    assert ptbxl_task_labels(codes, statements, "all")[i] == ["NORM", "SR"]


def test_scp_codes_parsing_counts_every_key():
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}") == ["NORM", "SR"]
    assert parse_scp_codes("NORM;SR") == ["NORM", "SR"]
    assert parse_scp_codes("") == [] and parse_scp_codes(float("nan")) == []


def test_unknown_code_is_refused():
    with pytest.raises(ValueError, match=r"record 1 has SCP code\(s\) \['XYZ'\] that are not in scp_statements.csv"):
        ptbxl_task_labels([["NORM"], ["XYZ"]], bundled_scp_statements(), "super")


def test_class_aucs_match_sklearn():
    rng = np.random.default_rng(0)
    Y = (rng.random((80, 4)) < 0.3).astype(int)
    Y[:, 3] = 0  # a class without positives
    S = np.round(rng.random((80, 4)), 1)  # ties
    aucs = class_aucs(Y, S)
    for k in range(3):
        assert aucs[k] == pytest.approx(roc_auc_score(Y[:, k], S[:, k]))
    assert np.isnan(aucs[3])
    boot = class_aucs(Y[None].repeat(2, 0), S[None].repeat(2, 0))
    assert boot.shape == (2, 4) and np.allclose(boot[:, :3], aucs[:3])


def test_resampled_aucs_are_exactly_the_aucs_of_the_resamples():
    """The bootstrap's matrix form gives the rank formula's numbers on the resampled copies, bit for bit."""
    rng = np.random.default_rng(1)
    n = 70
    Y = (rng.random((n, 6)) < [0.02, 0.2, 0.5, 0.9, 0.0, 1.0]).astype(int)  # rare, common, absent, all
    S = np.round(rng.random((n, 6)) + 0.3 * Y, 1)  # ties
    draws = rng.integers(0, n, size=(300, n))
    counts = np.stack([np.bincount(d, minlength=n) for d in draws])
    expected = class_aucs(Y[draws], S[draws])
    got = resample_class_aucs(Y, S, counts)
    assert got.shape == (300, 6)
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.isnan(got[:, 4:]).all()
    assert np.array_equal(got[~np.isnan(got)], expected[~np.isnan(expected)])


def test_full_download_layout(ptbxl_download, tmp_path):
    data = load_ptbxl_benchmark_data(ptbxl_download, rate=100)
    assert len(data) == 30 and data.sampling_rate == 100 and data.labelled.all()
    i = int(np.flatnonzero(data.ecg_id == 7189)[0])
    assert data.codes[i] == ["CLBBB", "IMI", "LVH", "SR"]
    result = ptbxl(ptbxl_download, tasks=("super",), probes=("logistic",), features=False, n_bootstrap=100,
                   out=tmp_path / "out", verbose=False)  # fmt: skip
    # Fold 10 has labels here: it is scored, and choices are made on fold 9.
    assert result.scored_fold == 10 and "validation fold 9" in result.selection
    # Titled with the model that ran (card name and weights hash), not the option's spelling "default".
    assert result.model == "stmem-tiny.ecgsoup-ipa (sha256 13fb9067ef0d)"
    assert result.summary().splitlines()[0].startswith("PTB-XL benchmark, model stmem-tiny.ecgsoup-ipa (sha256")
    table = result.table
    assert set(table["n_scored"]) == {4}
    assert {"layer 0", "layer 12", "PPA", "PMA (trained gate)", "best layer (chosen on validation)",
            "random weights (layer chosen on validation)"} <= set(table["representation"])  # fmt: skip
    payload = json.loads((tmp_path / "out" / "ptbxl.json").read_text())
    assert payload["scored_fold"] == 10 and (tmp_path / "out" / "ptbxl_super.png").exists()
    # The markdown explains itself (issue 25): tasks, counts, warnings, caveats; no path of this machine.
    markdown = (tmp_path / "out" / "ptbxl.md").read_text()
    for needed in ("## Tasks", "| super (diagnostic super-classes) | 5 |", "**Warnings**",
                   "task super is scored on 4 records (under 100)", "## Caveats", "| chosen layer |"):  # fmt: skip
        assert needed in markdown, needed
    for written in (markdown, (tmp_path / "out" / "ptbxl.json").read_text()):
        assert str(ptbxl_download) not in written and str(ptbxl_download.parent) not in written


def test_committed_results_render_from_their_json_without_machine_paths():
    """The results page is redrawn from the committed JSON; it warns where the paper's rule bites."""
    from ecgsoup.benchmark import plot_ptbxl_summary, ptbxl_result_from_json

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    payload = json.loads((results / "ptbxl.json").read_text())
    result = ptbxl_result_from_json({**payload, "source": "PTB-XL", "n_bootstrap": 1000})
    markdown = result.report_markdown()
    absent = {t["task"]: t["classes_absent_from_scored_fold"] for t in payload["tasks"]}
    assert f"task all: {absent['all']} of its 64 classes are absent from the scored fold" in markdown
    assert "task form is scored on 74 records (under 100)" in markdown and "task super" not in markdown
    summary = markdown.split("**Warnings**")[0]
    assert summary.count("\n| ") == 7  # header + chosen layer, PPA, random, clinical, hybrid, classes present
    assert plot_ptbxl_summary(result).axes[0].get_xticklabels()
    for path in results.glob("ptbxl*.md"):
        assert "/work/" not in path.read_text() and "/home/" not in path.read_text(), path


def test_bad_roots_get_one_clear_line(ptbxl_download, tmp_path, capsys):
    (ptbxl_download / "ptbxl_database.csv").rename(tmp_path / "db.csv")
    assert main(["benchmark", "ptbxl", str(ptbxl_download), "--out", str(tmp_path / "o")]) == 2
    assert "has no ptbxl_database.csv" in capsys.readouterr().err
    (tmp_path / "db.csv").rename(ptbxl_download / "ptbxl_database.csv")

    assert main(["benchmark", "ptbxl", str(ptbxl_download), "--rate", "500", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has records100/ but no records500/; pass rate=100 (--rate 100" in err and err.count("\n") == 1

    (ptbxl_download / "scp_statements.csv").unlink()
    with pytest.raises(FileNotFoundError, match="scp_statements.csv does not exist"):
        load_ptbxl_benchmark_data(ptbxl_download)


def test_code_missing_from_statements_and_unlabelled_folds(ptbxl_download, tmp_path):
    table = pd.read_csv(ptbxl_download / "ptbxl_database.csv")
    table.loc[0, "scp_codes"] = "{'NOTACODE': 100.0}"
    table.to_csv(ptbxl_download / "ptbxl_database.csv", index=False)
    with pytest.raises(ValueError, match=r"\['NOTACODE'\] that are not in scp_statements.csv"):
        ptbxl(ptbxl_download, tasks=("super",), probes=("logistic",), features=False, verbose=False)
    table.loc[0, "scp_codes"] = "{'NORM': 100.0}"
    table.loc[table["strat_fold"] >= 9, "scp_codes"] = "{}"
    table.to_csv(ptbxl_download / "ptbxl_database.csv", index=False)
    with pytest.raises(ValueError, match="Neither fold 9 nor fold 10 has labelled records: there is nothing to score"):
        ptbxl(ptbxl_download, tasks=("super",), probes=("logistic",), features=False, verbose=False)


@pytest.mark.slow
def test_subset_run_on_a_few_hundred_records(subset, tmp_path, capsys):
    """The z-scored subset through the command line: fold 9 scored, said, and every file written."""
    status = main(["benchmark", "ptbxl", str(subset), "--max-records", "300", "--tasks", "super", "rhythm",
                   "--probes", "logistic", "--bootstrap", "200", "--out", str(tmp_path / "out")])  # fmt: skip
    assert status == 0
    out = capsys.readouterr().out
    assert "Scored fold: 9" in out and "fold 10 has no labels, so fold 9 is scored" in out
    assert "| super (5) |" in out and "clinical features + best layer" in out
    payload = json.loads((tmp_path / "out" / "ptbxl.json").read_text())
    assert payload["scored_fold"] == 9 and {t["task"] for t in payload["tasks"]} == {"super", "rhythm"}
    table = pd.read_csv(tmp_path / "out" / "ptbxl.csv")
    assert table["auc"].between(0, 1).all() and (table["ci_low"] <= table["ci_high"]).all()
    assert ((table["n_train"] > 5 * table["n_scored"]) & (table["n_scored"] > 10)).all()  # folds 1-8 vs fold 9
    assert (tmp_path / "out" / "ptbxl_super.png").stat().st_size > 20_000
    timings = payload["timings_s"]
    phases = ["read_s", "preprocess_s", "embed_s", "embed_random_s", "features_s", "probes_s", "bootstrap_s",
              "write_s", "embedding_s"]  # fmt: skip
    assert all(timings[phase] >= 0 for phase in phases)
    assert set(timings["probes"]) == {"super", "rhythm"} and timings["probes"]["super"]["logistic"] > 0


@pytest.mark.slow
def test_logistic_probe_agrees_with_the_refitted_scikit_learn_pipeline(subset):
    """The batched fits choose the same C and layer as scikit-learn's pipeline, and score within 0.002.

    The scores agree to the rounding of matrix products; on 30-odd scored records a near
    tie that rounding reorders moves a class's AUC by one pair, about 0.001 of the macro AUC.
    """
    result = ptbxl(subset, max_records=300, tasks=("super",), probes=("logistic", "logistic-sklearn"),
                   features=False, random_baseline=False, pma=False, n_bootstrap=100, verbose=False)  # fmt: skip
    table = result.table.pivot(index="representation", columns="probe", values="auc")
    chosen = result.table.pivot(index="representation", columns="probe", values="chosen")
    assert len(table) >= 14 and table.notna().all().all()
    assert (table["logistic"] - table["logistic-sklearn"]).abs().max() <= 0.002
    assert (chosen["logistic"] == chosen["logistic-sklearn"]).all()
