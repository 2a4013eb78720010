"""The PTB-XL scaling benchmark: resampled folders the protocol reads, timings without any score."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ptbxl_scaling  # noqa: E402

from ecgsoup.benchmark import load_ptbxl_benchmark_data  # noqa: E402


def _keys(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


@pytest.fixture(scope="module")
def subset(shared_data):
    return shared_data / "ptbxl_zscored_subset"


@pytest.mark.parametrize("copies", ["perturbed", "exact"])
def test_resampled_folder_has_the_subset_layout(subset, tmp_path, copies):
    folder = ptbxl_scaling.make_resampled_subset(subset, 60, tmp_path / copies, copies=copies, seed=1)
    labels = pd.read_csv(folder / "labels.csv")
    assert len(labels) == 60 and labels["ecg_id"].is_unique
    assert "TIMING ONLY" in (folder / "TIMING_ONLY.txt").read_text()
    data = load_ptbxl_benchmark_data(folder)
    assert len(data) == 60 and data.labelled.all()
    assert data.X.shape[1:] == (2500, 12) and data.sampling_rate == 250
    assert set(data.fold) <= set(range(1, 10))  # copies keep their source's fold (1-9: labelled)
    source = pd.read_csv(subset / "labels.csv").set_index("scp_codes")
    assert set(labels["scp_codes"]) <= set(source.index)
    original = load_ptbxl_benchmark_data(subset)
    codes = {tuple(sorted(c)): i for i, c in enumerate(original.codes) if c is not None}
    assert all(tuple(sorted(c)) in codes for c in data.codes)
    real = {x.tobytes() for x in original.X}
    if copies == "exact":  # every copy is one of the real records, bit for bit
        assert all(x.tobytes() in real for x in data.X)
    else:
        assert not any(x.tobytes() in real for x in data.X)


def test_growth_exponent_and_projection():
    runs = [{"n_records": n, "total_s": 3.0 * n**1.5,
             "phases_s": {p: (2.0 * n if p == "embed" else 0.5 * n**1.5) for p in ptbxl_scaling.PHASES}}
            for n in (100, 400, 1600)]  # fmt: skip
    fit = ptbxl_scaling.growth(runs, sizes=(ptbxl_scaling.FULL_SIZE,))
    assert fit["embed"]["exponent"] == pytest.approx(1.0, abs=1e-3)
    assert fit["probes"]["exponent"] == pytest.approx(1.5, abs=1e-3)
    assert fit["total"]["projected_s"]["21799"] == pytest.approx(3.0 * 21799**1.5, rel=1e-3)
    embedding = {"rows": [{"size": "tiny", "precision": "float32", "records_per_s": 10.0, "records": 32}]}
    projected = ptbxl_scaling.projection(runs, fit, embedding)
    (row,) = projected["rows"]
    assert row["embed_s"] == pytest.approx(2 * 21799 / 10.0)
    assert row["rest_s"] == pytest.approx(sum(fit[p]["projected_s"]["21799"] for p in ptbxl_scaling.PHASES
                                              if p != "embed"), rel=1e-3)
    with_pass = ptbxl_scaling.projection(runs, fit, embedding, pass_rate=5.0)
    assert [r["records_per_s"] for r in with_pass["rows"]] == [5.0, 10.0]
    assert ptbxl_scaling.growth(runs[:1])["total"] is None


def test_one_size_times_every_phase_and_keeps_no_score(subset, tmp_path):
    folder = ptbxl_scaling.make_resampled_subset(subset, 40, tmp_path / "records", seed=2)
    protocol = {"tasks": ["super"], "probes": ["logistic"], "n_bootstrap": 20, "Cs": (0.1,), "pma": False,
                "features": False, "random_baseline": False}  # fmt: skip
    run = ptbxl_scaling.run_size(folder, model="random:ecgsoup-100hz-tiny", cache=tmp_path / "cache",
                                 precision="float32", protocol=protocol)  # fmt: skip
    assert set(run["phases_s"]) == set(ptbxl_scaling.PHASES)
    assert all(v >= 0 for v in run["phases_s"].values())
    assert run["n_records"] == 40 and run["models_embedded"] == 1
    assert run["total_s"] >= sum(run["phases_s"].values()) - 1e-6
    assert list(run["probes_per_task_s"]) == ["super"] and "logistic" in run["probes_per_task_s"]["super"]
    run.update(label="40 resampled", quiet={"load_at_start_1_5_15min": [1.0], "load_at_end_1_5_15min": [1.0],
                                            "other_processes_cpu_share_during_run": 0.0})  # fmt: skip
    payload = {"timing_only": ptbxl_scaling.TIMING_ONLY, "what": "test", "runs": [run], "growth": None}
    assert not [k for k in _keys(json.loads(json.dumps(payload))) if "auc" in k.lower() or k.startswith("ci_")]
    text = ptbxl_scaling.markdown(payload)
    assert text.count(ptbxl_scaling.TIMING_ONLY) == 2 and "AUC" not in text.replace(ptbxl_scaling.TIMING_ONLY, "")
    assert "| embed (model + random-weights twin) |" in text
    # Only the folder's labels.csv: the result tables were written to a deleted temporary folder.
    assert list(tmp_path.glob("**/*.csv")) == [folder / "labels.csv"]


def test_docs_section_is_replaced_between_its_markers(tmp_path):
    runs = [{"label": f"{n} resampled", "n_records": n, "total_s": 2.0 * n,
             "phases_s": {p: 0.25 * n for p in ptbxl_scaling.PHASES}} for n in (100, 400)]  # fmt: skip
    fit = ptbxl_scaling.growth(runs)
    payload = {"what": "Model `default`.", "runs": runs, "growth": fit, "command": "python x", "date": "today",
               "projection": ptbxl_scaling.projection(runs, fit, None, pass_rate=4.0)}  # fmt: skip
    results, page = tmp_path / "ptbxl_scaling.json", tmp_path / "speed.md"
    results.write_text(json.dumps(payload))
    page.write_text("# Speed\n\nintro\n")
    ptbxl_scaling.render_docs(results, page)
    once = page.read_text()
    ptbxl_scaling.render_docs(results, page)
    assert page.read_text() == once and once.startswith("# Speed\n\nintro\n")
    assert "**Timing only.**" in once and "| total | 200 | 800 | 1.0 |" in once
    assert "| tiny | float32 | 4.00 |" in once
