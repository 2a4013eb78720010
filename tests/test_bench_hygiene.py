"""The benchmarks' result writer refuses timings taken on a busy machine."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _common  # noqa: E402


def _status(noisy: bool) -> dict:
    return {"load_at_start_1_5_15min": [2.0, 1.0, 0.5], "load_at_end_1_5_15min": [2.1, 1.1, 0.6],
            "other_processes_cpu_share_during_run": 0.62 if noisy else 0.01,
            "other_processes_cpu_share": 0.5 if noisy else 0.0, "busy_threshold": 0.1, "noisy": noisy}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path)
    monkeypatch.delenv(_common.ALLOW_NOISY_ENV, raising=False)
    return tmp_path


def test_noisy_timing_results_are_refused_and_old_ones_kept(results, monkeypatch, capsys):
    (results / "speed.md").write_text("old quiet table\n")
    monkeypatch.setattr(_common, "quiet_status", lambda: _status(noisy=True))
    with pytest.raises(SystemExit) as exit_info:
        _common.write_results("speed", {"x": 1}, "| table |")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "speed: not written: other processes used 62% of the CPUs" in err
    assert "kept as speed.noisy.md instead" in err
    assert "Stop the other jobs and rerun, or set ECGSOUP_BENCH_ALLOW_NOISY=1" in err
    assert (results / "speed.md").read_text() == "old quiet table\n"
    assert not (results / "speed.json").exists()
    assert (results / "speed.noisy.md").read_text().startswith("> **Noisy run.**")


def test_noisy_results_written_on_request_carry_a_banner(results, monkeypatch):
    monkeypatch.setattr(_common, "quiet_status", lambda: _status(noisy=True))
    monkeypatch.setenv(_common.ALLOW_NOISY_ENV, "1")
    _, md = _common.write_results("speed", {"x": 1}, "| table |")
    text = md.read_text()
    assert text.startswith("> **Noisy run.** Other processes used 62% of the CPUs")
    assert json.loads((results / "speed.json").read_text())["quiet"]["noisy"] is True


def test_quiet_results_and_non_timing_results_are_written(results, monkeypatch):
    monkeypatch.setattr(_common, "quiet_status", lambda: _status(noisy=False))
    _, md = _common.write_results("speed", {"x": 1}, "| table |")
    assert "(quiet)" in md.read_text() and "Noisy" not in md.read_text()
    monkeypatch.setattr(_common, "quiet_status", lambda: _status(noisy=True))
    _, md = _common.write_results("quality", {"x": 1}, "| auc |", timing=False)  # scores, not timings
    assert "Noisy" not in md.read_text() and "noisy: the machine was busy" in md.read_text()


def test_own_worker_processes_do_not_count_as_other_load():
    import subprocess

    before = _common._cpu_snapshot()
    subprocess.run([sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"],
                   check=True)
    after = _common._cpu_snapshot()
    assert after[2] - before[2] >= 80  # the child's second of CPU (100 ticks/s) is this process's own
