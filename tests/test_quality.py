"""Signals that are not ECGs are embedded with a note, or left out on request (issue 26).

Real LUDB records (500 Hz, microvolts) are damaged in copies: one set to zero,
one with three leads off (flat), one clipped at +-0.3 mV as a saturated
amplifier would.  Undamaged real records get no note.
"""

import numpy as np
import pytest

from ecgsoup.cli import EXIT_OK, EXIT_PARTIAL, main
from ecgsoup.quality import signal_quality
from ecgsoup.store import embed_to_store, open_store


@pytest.fixture(scope="module")
def damaged_input(ludb, tmp_path_factory):
    """Five real records: 0 intact, 1 all zero, 2 with V2/V4/V6 off, 3 clipped, 4 intact."""
    x = ludb["x"][:5].astype(np.int16).copy()
    x[1] = 0
    names = list(ludb["lead_names"])
    for lead in ("V2", "V4", "V6"):
        x[2, :, names.index(lead)] = 17  # an electrode off: a constant offset
    x[3] = np.clip(x[3], -300, 300)  # microvolts: the rail at +-0.3 mV
    path = tmp_path_factory.mktemp("quality") / "in.npz"
    np.savez(path, x=x, fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=ludb["record_id"][:5], units="uV")
    return path, [int(r) for r in ludb["record_id"][:5]]


def test_notes_name_the_problem_and_leave_real_records_alone(ludb):
    names = ludb["lead_names"]
    notes = [signal_quality(ludb["x"][i] / 1000.0, 500.0, names) for i in range(40)]
    assert notes.count("") >= 39  # real records (LUDB record 120 really holds a clipped lead I)
    assert signal_quality(np.zeros((5000, 12)), 500.0, names) == "all-zero signal"
    flat = ludb["x"][0] / 1000.0
    flat[:, 7] = 0.017
    assert signal_quality(flat, 500.0, names) == "flat lead(s) V2 (electrode off?)"
    clipped = np.clip(ludb["x"][0] / 1000.0, -0.3, 0.3)
    assert "clipped lead(s)" in signal_quality(clipped, 500.0, names)


@pytest.mark.parametrize("fmt", ["zarr", "npz"])
def test_store_and_summary_carry_the_notes(damaged_input, tmp_path, capsys, fmt):
    path, ids = damaged_input
    store = tmp_path / f"s.{fmt}"
    # Was: all five "embedded" without a word.
    status = main(["embed", str(path), "--out", str(store), "--model", "random", "--chunk-size", "2", "--quiet"])
    out = capsys.readouterr().out
    assert status == EXIT_OK and "5 of 5 records embedded" in out
    assert "Quality: 3 embedded record(s) do not look like an ECG" in out and f"{ids[1]}: all-zero signal" in out
    stored = open_store(store)
    assert stored.record_ids == ids and stored.attrs["n_flagged"] == 3
    notes = stored.attrs["quality_notes"]
    assert notes[ids[1]] == "all-zero signal"
    assert notes[ids[2]] == "flat lead(s) V2, V4, V6 (electrode off?)"
    assert notes[ids[3]].startswith("clipped lead(s)") and ids[0] not in notes and ids[4] not in notes


def test_skip_poor_signals_fails_them_with_the_note(damaged_input, tmp_path, capsys):
    path, ids = damaged_input
    store = tmp_path / "s.npz"
    args = ["embed", str(path), "--out", str(store), "--model", "random", "--quiet", "--skip-poor-signals"]
    assert main(args) == EXIT_PARTIAL
    captured = capsys.readouterr()
    assert "2 of 5 records embedded, 3 failed" in captured.out
    assert f"Skipped record {ids[1]}: not embedded (poor_signals='skip', --skip-poor-signals): all-zero" in captured.err
    stored = open_store(store)
    assert stored.record_ids == [ids[0], ids[4]] and len(stored.errors) == 3
    # The choice decides which records are embedded: a resume must make the same one.
    with pytest.raises(ValueError, match="poor_signals: store has 'skip', this run 'flag'"):
        embed_to_store(path, store, model="random")
