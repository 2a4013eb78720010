"""The per-layer atlas: several models through one PTB-XL protocol, combined, resumable."""

import json

import numpy as np
import pytest

from ecgsoup.atlas import atlas
from ecgsoup.cli import EXIT_USAGE, main

MODELS = ["random:hubert-ecg-tiny", "random:ecgfounder-tiny"]


@pytest.fixture(scope="module")
def subset(shared_data):
    return shared_data / "ptbxl_zscored_subset"


@pytest.fixture(scope="module")
def finished(subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    result = atlas(subset, MODELS, out=out, tasks=["super"], n_bootstrap=100, max_records=90, features=True,
                   verbose=False)  # fmt: skip
    return out, result


def test_the_atlas_combines_every_model_on_one_depth_axis(finished, subset):
    out, result = finished
    assert [run.model for run in result.runs] == MODELS and not any(run.reused for run in result.runs)
    layers = result.layers
    for run in result.runs:
        curve = layers[layers["model"] == run.model]
        assert len(curve) == run.n_layers  # one task, one probe
        assert curve["relative_depth"].min() == 0.0 and curve["relative_depth"].max() == 1.0
        assert run.weights == "random weights"
    reps = result.table.groupby("model")["representation"].apply(set).to_dict()
    # Random models are baselines themselves (no twin of a twin); ECGFounder's stages are not one
    # space, so its fusion is every layer balanced, and HuBERT-ECG's is PPA.
    assert reps[MODELS[0]] == reps[MODELS[1]] == {"chosen layer", "last layer", "fusion"}
    fusion = result.table[result.table["representation"] == "fusion"].set_index("model")["chosen"]
    assert fusion[MODELS[0]].startswith("PPA") and fusion[MODELS[1]].startswith("all layers (balanced)")
    assert reps["-"] == {"clinical features"}
    # The paired claim is the difference of the two rows it names, on the same records.
    for claim in result.claims.itertuples():
        rows = result.table[(result.table["model"] == claim.model) & (result.table["task"] == claim.task)]
        by = rows.set_index("representation")["auc"]
        assert claim.difference == pytest.approx(by["chosen layer"] - by["last layer"])
        assert claim.ci_low <= claim.difference <= claim.ci_high
    payload = json.loads((out / "atlas.json").read_text())
    assert [m["model"] for m in payload["models"]] == MODELS and (out / "atlas.png").stat().st_size > 10_000
    text = (out / "atlas.md").read_text()
    assert "Scored fold: 9" in text and "random weights" in text and "chosen layer - last layer" in text
    assert str(subset) not in text + json.dumps(payload)  # no path of this machine in the results


def test_an_interrupted_atlas_continues_with_the_next_model(finished, subset, capsys):
    out, first = finished
    # The first model's run is complete; the second is lost, as if the run had been killed during it.
    (out / "models" / "random_ecgfounder-tiny" / "atlas-run.json").unlink()
    again = atlas(subset, MODELS, out=out, tasks=["super"], n_bootstrap=100, max_records=90, verbose=True)
    said = capsys.readouterr().out
    assert "[atlas 1/2] random:hubert-ecg-tiny: finished earlier with the same settings; reused" in said
    assert "[atlas 2/2] random:ecgfounder-tiny: ecgfounder" in said
    assert [run.reused for run in again.runs] == [True, False]
    np.testing.assert_allclose(again.table["auc"], first.table["auc"])
    # Other settings are another atlas: nothing is reused.
    other = atlas(subset, MODELS[:1], out=out, tasks=["super"], n_bootstrap=200, max_records=90, verbose=False,
                  figure=False)  # fmt: skip
    assert not other.runs[0].reused


def test_a_model_given_twice_is_one_line(subset, tmp_path, capsys):
    args = ["benchmark", "ptbxl", str(subset), "--model", "default", "--model", "default", "--out", str(tmp_path)]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "given twice" in err and err.count("\n") == 1
