"""Original-layout checkpoints of every family through the command line, end to end.

The golden fixtures are tiny models with random weights saved in each
family's published layout; `ecgsoup embed`, `ecgsoup evaluate` and `ecgsoup
benchmark ptbxl` run on real PTB-XL records with them, as a user would with
the downloaded weights.
"""

import json
from pathlib import Path

import pytest

from ecgsoup.cli import main
from ecgsoup.store import open_store

GOLDEN = Path(__file__).parent / "golden"
MODELS = {
    "ecgfounder": f"ecgfounder:{GOLDEN / 'ecgfounder-tiny.pth'}",
    "hubert-ecg": f"hubert-ecg:{GOLDEN / 'hubert-ecg-tiny'}",
    "merl": f"merl:{GOLDEN / 'merl-tiny.pth'}",
    "ecg-jepa": f"ecg-jepa:{GOLDEN / 'ecg-jepa-tiny.pth'}",
    "ecg-fm": f"ecg-fm:{GOLDEN / 'ecg-fm-tiny.pt'}",
}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.mark.parametrize("family", sorted(MODELS))
def test_embed_and_evaluate_an_original_checkpoint(family, shared_data, tmp_path, capsys):
    store = tmp_path / "emb.zarr"
    assert main(["embed", str(shared_data / "ptbxl_sample"), "--model", MODELS[family], "--out", str(store),
                 "--quiet"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "30 of 30 records embedded" in out
    assert "licence:" in err  # the licence notice, once, as one line
    stored = open_store(store)
    assert stored.attrs["model_family"] == family and len(stored.attrs["model_sha256"]) == 64
    assert stored.X.shape == (30, stored.layer_spec.n_features)
    status = main(["evaluate", str(store), "--labels", str(shared_data / "ptbxl_sample" / "labels.csv"),
                   "--target", "challenge2024_labels", "--positive", "NORM", "--out", str(tmp_path / "probe")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "nested CV verdict: ROC AUC" in out and (tmp_path / "probe" / "layer_probe.csv").exists()
    rows = {line.split()[0] for line in out.splitlines() if line[:1].isalpha() and len(line.split()) == 6}
    if family in ("ecgfounder", "merl"):  # stages of different widths: no PPA, a balanced row instead
        assert "all_balanced" in rows and "ppa" not in rows
    else:
        assert "ppa" in rows and "all_balanced" not in rows


def test_benchmark_ptbxl_with_an_original_checkpoint(shared_data, tmp_path, capsys):
    out_dir = tmp_path / "bench"
    status = main(["benchmark", "ptbxl", str(shared_data / "ptbxl_zscored_subset"), "--model",
                   MODELS["hubert-ecg"] + "@benchmark", "--max-records", "80", "--tasks", "super", "--probes",
                   "logistic", "--no-features", "--bootstrap", "100", "--out", str(out_dir)])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    result = json.loads((out_dir / "ptbxl.json").read_text())
    assert "hubert-ecg" in result["model"]
    reps = {row["representation"] for row in result["table"]}
    assert {"layer 0", "PPA", "PMA (trained gate)", "random weights (layer chosen on validation)"} <= reps
