"""``ecgsoup evaluate`` parses labels honestly (issue 10, item 6).

Was: comma-separated multi-label cells read with the default ``;`` became
"combination classes" (AUC 0.53, no warning); ``--positive NORM`` matched only
whole cells; empty cells silently became all-negative rows; hundreds of
repeated warnings on stderr.  The store holds the 30 real PTB-XL records of
the shared sample, embedded once by an untrained 2-block encoder; their
``labels.csv`` has comma-separated Challenge-2024 classes and ``strat_fold``.
"""

import argparse

import numpy as np
import pandas as pd
import pytest

from ecgsoup.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from ecgsoup.store import embed_to_store


@pytest.fixture(scope="module")
def ptbxl_store(shared_data, tmp_path_factory):
    from ecgsoup.backbones.stmem import get_config, random_model

    config = get_config("ecgsoup-100hz-tiny").replace(name="test-100hz-2blocks", depth=2)
    store = tmp_path_factory.mktemp("store") / "ptbxl.npz"
    embed_to_store(shared_data / "ptbxl_sample", store, model=random_model(config, seed=1))
    return store


@pytest.fixture(scope="module")
def labels(shared_data):
    return pd.read_csv(shared_data / "ptbxl_sample" / "labels.csv", keep_default_na=False, dtype=str)


def _evaluate(store, labels_csv, *options):
    # Few resamples, two inner folds and no clinical row: these tests are about reading the labels.
    return main(["evaluate", str(store), "--labels", str(labels_csv), "--fusions", "none", "--bootstrap", "20",
                 "--inner-cv", "2", "--clinical", "none", *options])


def test_comma_separated_multilabel_is_detected_and_printed_before_fitting(ptbxl_store, shared_data, labels, capsys):
    status = _evaluate(ptbxl_store, shared_data / "ptbxl_sample" / "labels.csv", "--target", "challenge2024_labels")
    out, err = capsys.readouterr()
    assert status == EXIT_OK, err
    assert "task: multilabel on --target 'challenge2024_labels', labels split on ','" in out
    n_norm = sum("NORM" in [p.strip() for p in cell.split(",")] for cell in labels["challenge2024_labels"])
    n_sttc = sum("STTC" in cell for cell in labels["challenge2024_labels"])
    assert f"NORM {n_norm}" in out and f"STTC {n_sttc}" in out
    assert "STTC, CD" not in out  # no combination classes
    assert "empty labels: 0 records" in out
    # PTB-XL's strat_fold is used by itself.
    assert f"{labels['strat_fold'].nunique()} folds from column 'strat_fold' (found in the labels" in out
    assert out.index("task: multilabel") < out.index("layer_00")
    # Folds of 3 records leave classes absent from a test fold: one summary line, not one per fit.
    assert err.count("\n") <= 3 and "Traceback" not in err
    assert "UndefinedMetricWarning x" in err


def test_ambiguous_separator_is_refused_in_one_line(ptbxl_store, labels, tmp_path, capsys):
    table = labels.copy()
    cells = ["A;B", "A", "B", "C, D", "C", "D"]
    table["mixed"] = [cells[i % len(cells)] for i in range(len(table))]
    table.to_csv(tmp_path / "labels.csv", index=False)
    status = _evaluate(ptbxl_store, tmp_path / "labels.csv", "--target", "mixed")
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and err.count("\n") == 1
    assert "cannot tell which separator splits the labels (';' in 5 cells, ',' in 5 cells)" in err
    assert "--separator" in err
    # Told which one, it runs.
    assert _evaluate(ptbxl_store, tmp_path / "labels.csv", "--target", "mixed", "--separator", ";",
                     "--folds", "none", "--cv", "2") == EXIT_OK  # fmt: skip
    assert "labels split on ';'" in capsys.readouterr().out


def test_a_comma_inside_a_single_label_is_not_a_separator(ptbxl_store, labels, tmp_path, capsys):
    table = labels.copy()
    table["rhythm"] = ["Atrial flutter, typical" if i % 3 == 0 else "Sinus rhythm" for i in range(len(table))]
    table.to_csv(tmp_path / "labels.csv", index=False)
    assert _evaluate(ptbxl_store, tmp_path / "labels.csv", "--target", "rhythm", "--folds", "none",
                     "--cv", "3", "--positive", "Sinus rhythm") == EXIT_OK  # fmt: skip
    out = capsys.readouterr().out
    assert "task: binary on --target 'rhythm'\n" in out and "rhythm == 'Sinus rhythm'" in out


def test_positive_matches_a_label_inside_a_multilabel_cell(ptbxl_store, shared_data, labels, capsys):
    n_sttc = sum("STTC" in [p.strip() for p in cell.split(",")] for cell in labels["challenge2024_labels"])
    assert n_sttc > sum(cell == "STTC" for cell in labels["challenge2024_labels"])  # it is mostly in combinations
    status = _evaluate(ptbxl_store, shared_data / "ptbxl_sample" / "labels.csv", "--target",
                       "challenge2024_labels", "--positive", "STTC", "--folds", "none", "--cv", "3")  # fmt: skip
    out = capsys.readouterr().out
    assert status == EXIT_OK
    assert f"positive: challenge2024_labels has 'STTC': {n_sttc} records; negative: {30 - n_sttc} records" in out
    assert _evaluate(ptbxl_store, shared_data / "ptbxl_sample" / "labels.csv", "--target",
                     "challenge2024_labels", "--positive", "NOPE") == EXIT_USAGE  # fmt: skip
    assert "--positive 'NOPE' never occurs" in capsys.readouterr().err


@pytest.mark.parametrize("empty, n_records, note", [
    ("drop", 24, "6 records, dropped (--empty drop)"),
    ("negative", 30, "6 records, kept with no label (negative for every class; --empty negative)"),
])  # fmt: skip
def test_empty_label_cells_are_dropped_or_kept_as_said(ptbxl_store, labels, tmp_path, capsys, empty, n_records, note):
    table = labels.copy()
    table.loc[table.index[::5], "challenge2024_labels"] = ""  # 6 of 30 records without a label
    table.to_csv(tmp_path / "labels.csv", index=False)
    status = _evaluate(ptbxl_store, tmp_path / "labels.csv", "--target", "challenge2024_labels",
                       "--empty", empty, "--folds", "none", "--cv", "2")  # fmt: skip
    out = capsys.readouterr().out
    assert status == EXIT_OK
    assert f"empty labels: {note}" in out and f"{n_records} records, target" in out


def test_folds_and_groups_columns(ptbxl_store, labels, tmp_path, capsys):
    from ecgsoup.targets import label_splits

    rows = labels.to_dict("records")
    y = np.asarray([int("NORM" in r["challenge2024_labels"]) for r in rows])
    cv, text = label_splits(rows, y, "binary", cv=5, n_repeats=2, random_state=0)
    folds = np.asarray([int(r["strat_fold"]) for r in rows])
    assert len(cv) == len(set(folds)) and all(len(set(folds[test])) == 1 for _, test in cv)
    assert "from column 'strat_fold'" in text

    # A patient column: no patient on both sides of a split, over every repeat.
    patients = [f"p{i // 2}" for i in range(len(rows))]
    rows = [{**r, "patient": p} for r, p in zip(rows, patients)]
    cv, text = label_splits(rows, y, "binary", groups="patient", cv=3, n_repeats=2, random_state=0)
    assert len(cv) == 6 and "by groups of 'patient' (15 groups)" in text
    groups = np.asarray(patients)
    assert all(not set(groups[train]) & set(groups[test]) for train, test in cv)

    cv, text = label_splits(rows, y, "binary", folds="none", cv=4, n_repeats=1, random_state=0)
    assert cv == 4 and text == "4-fold CV x 1"

    table = labels.assign(patient=patients)
    table.to_csv(tmp_path / "labels.csv", index=False)
    common = ["--target", "challenge2024_labels", "--positive", "NORM"]
    assert _evaluate(ptbxl_store, tmp_path / "labels.csv", *common, "--groups", "patient", "--cv", "3") == EXIT_OK
    assert "3-fold CV x 1 by groups of 'patient'" in capsys.readouterr().out
    assert _evaluate(ptbxl_store, tmp_path / "labels.csv", *common, "--groups", "patient", "--folds", "strat_fold") == EXIT_USAGE
    assert "pass one of them" in capsys.readouterr().err
    assert _evaluate(ptbxl_store, tmp_path / "labels.csv", *common, "--groups", "nope") == EXIT_USAGE
    assert "--groups 'nope' is not a column" in capsys.readouterr().err


def test_help_shows_every_default(capsys):
    parser = build_parser()
    evaluate = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    assert evaluate.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    text = evaluate.format_help()
    for option in ("--separator", "--empty", "--cv", "--folds", "--groups", "--chunk-size", "--ptbxl-rate"):
        assert option in text
    for shown in ("(default: auto)", "(default: drop)", "(default: 5)", "(default: 1000)", "(default: 64)"):
        assert shown in " ".join(text.split()), shown
    optional = [a for a in evaluate._actions if a.option_strings and a.help != argparse.SUPPRESS and a.dest != "help"]
    assert " ".join(text.split()).count("(default: ") == len(optional)
