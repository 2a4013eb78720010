"""``ecgsoup.targets``: label cells read as data, the task inferred, ``y`` built and reported."""

import numpy as np
import pytest

from ecgsoup.targets import (
    REGRESSION_MIN_VALUES,
    detect_separator,
    infer_task,
    is_numeric_column,
    make_target,
    normal_id,
    parse_label_cell,
    split_labels,
)


def test_cells_missing_markers_and_dict_literals():
    assert parse_label_cell("  NA ") == "" and parse_label_cell("null") == "" and parse_label_cell("#N/A") == ""
    assert parse_label_cell(" STTC ") == "STTC"
    assert parse_label_cell("{'NORM': 100.0, 'SR': 0.0}") == "NORM;SR"
    assert parse_label_cell("{'NORM': 100.0, 'SR': 0.0}", separator=",") == "NORM,SR"
    with pytest.raises(ValueError, match="not a valid dict string"):
        parse_label_cell("{'NORM': 100.0, 'SR'")
    with pytest.raises(ValueError, match="not a dict of statement codes"):
        parse_label_cell("{1: 2}")
    assert split_labels("STTC, HYP", ",") == ["STTC", "HYP"] and split_labels("", ";") == []
    assert split_labels("A, B", None) == ["A, B"]


def test_separator_is_confirmed_by_other_cells_and_never_guessed():
    assert detect_separator(["STTC, HYP", "STTC", "NORM"]) == ","
    assert detect_separator(["Atrial flutter, typical", "Sinus rhythm"]) is None
    with pytest.raises(ValueError, match=r"cannot tell which separator .*';' in 1 cells, ',' in 1 cells"):
        detect_separator(["A;B", "A", "B", "C, D", "C", "D"], target="mixed")


def test_task_inference():
    assert infer_task(["yes", "no", "no"]) == "binary"
    assert infer_task(["AF", "", ""]) == "binary"  # one value and empty cells: has it or not
    assert infer_task(["a", "b", "c"]) == "multiclass"
    assert infer_task(["a", "b", "c"], positive="a") == "binary"
    assert infer_task(["a;b", "a", "c"], separator=";") == "multilabel"
    ages = [str(20 + i) for i in range(REGRESSION_MIN_VALUES + 1)] + [">89", ""]
    assert is_numeric_column(ages) and infer_task(ages) == "regression"
    assert not is_numeric_column([str(i) for i in range(REGRESSION_MIN_VALUES)])  # a few codes are classes


def test_regression_threshold_matches_the_probe():
    from ecgsoup.nested import REGRESSION_MIN_VALUES as nested_threshold

    assert REGRESSION_MIN_VALUES == nested_threshold


def test_make_target_binary_multiclass_multilabel_regression():
    binary = make_target(["no", "yes", "no", "", "yes"], target="af")
    assert binary.task == "binary" and binary.keep == [0, 1, 2, 4] and list(binary.y) == [0, 1, 0, 1]
    assert "  positive: af == 'yes': 2 records; negative: 2 records" in binary.report
    with pytest.raises(ValueError, match="say which is positive: --positive 'a' or --positive 'b'"):
        make_target(["a", "b", "a"], target="t")

    multiclass = make_target(["x", "y", "x", "z", "", "y"], target="rhythm", empty="negative", min_count=2)
    assert multiclass.task == "multiclass" and multiclass.keep == [0, 1, 2, 5] and sorted(set(multiclass.y)) == ["x", "y"]
    assert "  --min-count 2: dropped the records of 2 rare classes: (empty) 1, z 1" in multiclass.report
    with pytest.raises(ValueError, match="has a single value"):
        make_target(["x", "x", "z"], target="rhythm", task="multiclass", min_count=2)

    multilabel = make_target(["A, B", "A", "B", "C"], target="dx")
    assert multilabel.task == "multilabel" and multilabel.label_names == ["A", "B", "C"]
    assert multilabel.y.shape == (4, 3) and multilabel.report[0] == "task: multilabel on --target 'dx', labels split on ','"

    values = [str(v) for v in np.linspace(40, 90, 30)] + ["90+"]
    regression = make_target(values, target="age")
    assert regression.task == "regression" and regression.y[-1] == 90.0
    assert any("bounds: 1 cells such as '90+'" in line for line in regression.report)


def test_identifiers_match_across_store_and_csv():
    assert normal_id("00841") == normal_id(841) == normal_id(" 841 ") == 841
    assert normal_id("rec_7") == "rec_7"
