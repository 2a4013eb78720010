"""Slow end-to-end checks of the README's promises: the example and the demo.

Both use the bundled pretrained model and the bundled LUDB sample, so they
need no shared data; CI runs them (it runs slow tests).
"""

import re
from pathlib import Path

import pandas as pd
import pytest

from ecgsoup.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    return blocks[0]


def test_readme_example_is_at_most_15_lines():
    lines = [line for line in _readme_example().splitlines() if line.strip()]
    assert len(lines) <= 15


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example caches into ./ecgsoup-cache
    exec(compile(_readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    # one row per fusion of the embedder's grid: 12 layers, PPA and PMA
    assert "PPA()" in out and "PMA(random_state=0)" in out and "mean_test_score" in out
    assert len(re.findall(r"LayerSelector\(layers=\d+\)", out)) == 12


@pytest.mark.slow
def test_demo_prints_scores_and_writes_plots(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "--tasks", "hypertrophy", "--cv", "3"])
    assert status == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "| ppa |" in out and "| pma |" in out
    table = pd.read_csv(tmp_path / "hypertrophy_layer_probe.csv", index_col=0)
    assert list(table.index[:13]) == [f"layer_{i:02d}" for i in range(13)]
    assert table["mean"].between(0, 1).all()
    assert (tmp_path / "hypertrophy_layer_probe.png").stat().st_size > 10_000
    summary = (tmp_path / "summary.md").read_text()
    # The task is defined with its counts, the honest rows are there, and each task ends in a verdict.
    assert "142 of 200 records positive" in out and "ROC AUC (mean ± std over folds)" in out
    for row in ("layer chosen by inner CV", "random weights, best layer (optimistic)",
                "clinical features (ECGFeatures)", "clinical features + PPA (hybrid)"):  # fmt: skip
        assert row in table.index and row in summary
    assert "Within one standard deviation of the best layer" in out
    assert "## Summary" in summary and "Original ST-MEM weights" in summary
