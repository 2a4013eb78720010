"""Masked pretraining: objective, IPA reduction at L=1, schedule, checkpoints, resume, CLI."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgsoup.backbones.stmem import get_config, load_model, new_encoder
from ecgsoup.cli import main
from ecgsoup.pretraining import (
    MaskedAutoencoder,
    PretrainSettings,
    compact_checkpoint,
    load_checkpoint,
    load_pretraining_arrays,
    lr_at_step,
    pretrain,
)
from ecgsoup.pretraining.trainer import load_checkpoint_encoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from export_model import _reproduce_command  # noqa: E402  (scripts/ is not a package)

# A small architecture so that a few optimiser steps take well under a second.
SMALL = get_config("ecgsoup-100hz-tiny").replace(name="test-small", width=64, heads=2, dim_head=32, mlp_dim=128, depth=2)
_LEADS = list(SMALL.lead_names)
DECODER = dict(decoder_dim=32, decoder_depth=1, decoder_heads=2, decoder_dim_head=16)


@pytest.fixture(scope="module")
def ptbxl_val(shared_data):
    """The real PTB-XL validation shard at 100 Hz in the model's lead order."""
    path = shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_val.npz"
    return load_pretraining_arrays(path, SMALL)


def _mae(config, aggregation, seed=0):
    model = MaskedAutoencoder(new_encoder(config), aggregation=aggregation, **DECODER)
    return model.init_weights(torch.Generator().manual_seed(seed))


def test_pretraining_arrays_match_model_contract(ptbxl_val):
    assert ptbxl_val.shape == (183, 12, 1000)
    assert ptbxl_val.dtype == np.float32
    # The shard stores z-scores x 1000 (data README); resampling keeps the scale.
    # Scale does not matter for training: every crop is z-scored again.
    assert 700 < float(ptbxl_val.std(axis=-1).mean()) < 1300


def test_ipa_equals_st_mem_with_one_block(ptbxl_val):
    config = SMALL.replace(depth=1)
    st_mem, ipa = _mae(config, "last"), _mae(config, "all_layers_mean")
    x = torch.from_numpy(ptbxl_val[:4])
    out_a = st_mem(x, generator=torch.Generator().manual_seed(1))
    out_b = ipa(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_a.pred, out_b.pred)
    assert float(out_a.loss.detach()) == pytest.approx(float(out_b.loss.detach()))


def test_ipa_differs_from_st_mem_with_two_blocks(ptbxl_val):
    st_mem, ipa = _mae(SMALL, "last"), _mae(SMALL, "all_layers_mean")
    x = torch.from_numpy(ptbxl_val[:4])
    out_a = st_mem(x, generator=torch.Generator().manual_seed(1))
    out_b = ipa(x, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(out_a.pred, out_b.pred)


def test_masking_keeps_a_quarter_of_each_lead_and_loss_ignores_visible(ptbxl_val):
    model = _mae(SMALL, "last")
    x = torch.from_numpy(ptbxl_val[:3])
    out = model(x, generator=torch.Generator().manual_seed(0))
    assert out.mask.shape == (3, 12, 20)
    assert torch.all(out.mask.sum(dim=-1) == 15)  # 0.75 of 20 patches masked in every lead
    # Changing predictions of visible patches must not change the loss.
    pred = out.pred.detach().clone()
    pred[out.mask == 0] += 100.0
    assert float(model.loss(x, pred, out.mask)) == pytest.approx(float(out.loss.detach()))


def test_lr_schedule_warms_up_then_decays_to_minimum():
    total, warmup, peak = 100, 10, 1e-3
    rates = [lr_at_step(s, total, warmup, peak, 1e-5) for s in range(total + 1)]
    assert rates[0] == pytest.approx(peak / warmup)
    assert rates[warmup - 1] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1 :]))
    assert rates[-1] == pytest.approx(1e-5)


def _settings(**changes):
    base = dict(config=SMALL, epochs=2, warmup_epochs=1, batch_size=8, precision="float32",
                checkpoint_every=2, decoder=DECODER, seed=3)  # fmt: skip
    return PretrainSettings(**{**base, **changes})


def test_pretrain_writes_log_best_model_and_resumes_exactly(ptbxl_val, tmp_path):
    train, val = ptbxl_val[:24], ptbxl_val[24:32]
    full = pretrain(train, val, tmp_path / "full", _settings(), progress=False)
    assert full["step"] == 6 and math.isfinite(full["best_val_loss"])

    with open(tmp_path / "full" / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["val_loss"]) > 0 for r in rows)

    best = load_model(tmp_path / "full" / "best")
    assert best.metadata["pretrained"] is True and best.config.depth == 2

    # Interrupt after 3 steps (mid-epoch), then resume: identical final weights.
    pretrain(train, val, tmp_path / "split", _settings(), max_steps=3, progress=False)
    resumed = pretrain(train, val, tmp_path / "split", _settings(), resume=True, progress=False)
    assert resumed["step"] == 6
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_keep_epochs_and_compact_resume(ptbxl_val, tmp_path):
    train, val = ptbxl_val[:24], ptbxl_val[24:32]
    settings = _settings(keep_epochs=(1,))
    summary = pretrain(train, val, tmp_path / "run", settings, max_steps=3, progress=False)
    assert load_model(tmp_path / "run" / "epoch-001").metadata["epoch"] == 1
    assert summary["finished"] is False and "--resume" in summary["resume"]
    # The compact copy (bf16 moments) resumes on the same schedule.
    packed = compact_checkpoint(tmp_path / "run" / "checkpoint.pt", tmp_path / "moved" / "checkpoint.pt")
    assert packed.stat().st_size < (tmp_path / "run" / "checkpoint.pt").stat().st_size
    resumed = pretrain(train, val, tmp_path / "moved", settings, resume=True, progress=False)
    assert resumed["step"] == 6 and resumed["finished"] is True


def test_max_steps_before_an_epoch_reports_no_best_model(ptbxl_val, tmp_path, capsys):
    shard = tmp_path / "val.npz"
    np.savez(shard, x=np.swapaxes(ptbxl_val[:40], 1, 2), fs=100, lead_names=np.array(_LEADS))
    status = main(["pretrain", "--data", str(shard), "--config", "ecgsoup-100hz-tiny", "--epochs", "1",
                   "--batch-size", "8", "--max-steps", "2", "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    assert status == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["best_model"] is None and summary["best_val_loss"] is None
    assert "Infinity" not in out


def test_malicious_checkpoint_is_refused(ptbxl_val, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (tmp_path / "run").mkdir()
    torch.save({"model": Exploit()}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="holds objects other than tensors and plain containers, so it was not loaded"):
        load_checkpoint_encoder(tmp_path / "run")
    with pytest.raises(ValueError, match="not loaded"):
        pretrain(ptbxl_val[:8], ptbxl_val[8:10], tmp_path / "run", _settings(), resume=True, progress=False)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_training_lowers_validation_loss_with_bf16(ptbxl_val, tmp_path):
    settings = _settings(epochs=4, precision="bfloat16", base_lr=5e-3)
    pretrain(ptbxl_val[:48], ptbxl_val[48:64], tmp_path, settings, progress=False)
    with open(tmp_path / "log.csv") as handle:
        losses = [float(r["val_loss"]) for r in csv.DictReader(handle)]
    assert losses[-1] < losses[0]


def test_resume_refuses_other_settings_and_missing_checkpoint(ptbxl_val, tmp_path):
    train, val = ptbxl_val[:16], ptbxl_val[16:24]
    with pytest.raises(FileNotFoundError, match="--resume"):
        pretrain(train, val, tmp_path, _settings(), resume=True, progress=False)
    pretrain(train, val, tmp_path, _settings(), max_steps=1, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        pretrain(train, val, tmp_path, _settings(batch_size=4), resume=True, progress=False)


def test_pretrain_rejects_bad_data(ptbxl_val, tmp_path):
    with pytest.raises(ValueError, match="12 leads"):
        pretrain(ptbxl_val[:8, :6], ptbxl_val[8:10], tmp_path, _settings(), progress=False)
    with pytest.raises(ValueError, match="at least 1000"):
        pretrain(ptbxl_val[:8, :, :500], ptbxl_val[8:10], tmp_path, _settings(), progress=False)
    bad = ptbxl_val[:8].copy()
    bad[2, 3, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pretrain(bad, ptbxl_val[8:10], tmp_path, _settings(), progress=False)


def test_cli_pretrain_end_to_end(shared_data, tmp_path, capsys):
    shard = shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_val.npz"
    status = main(["pretrain", "--data", str(shard), "--config", "ecgsoup-100hz-tiny", "--epochs", "1",
                   "--batch-size", "64", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "model"),
                   "--quiet"])  # fmt: skip
    assert status == 0
    assert "165 records, validating on 18" in capsys.readouterr().out
    model = load_model(tmp_path / "model")
    assert model.config.name == "ecgsoup-100hz-tiny" and model.metadata["objective"] == "st-mem"
    assert (tmp_path / "run" / "log.csv").exists()


def test_cli_pretrain_reports_missing_data(tmp_path, capsys):
    status = main(["pretrain", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "run")])
    assert status == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_drops_log_rows_of_epochs_after_the_checkpoint(ptbxl_val, tmp_path):
    """A run killed between checkpoints retrains those epochs: each is logged once."""
    train, val = ptbxl_val[:24], ptbxl_val[24:32]
    pretrain(train, val, tmp_path / "run", _settings(), max_steps=3, progress=False)  # epoch 1, checkpoint
    log = tmp_path / "run" / "log.csv"
    with open(log) as handle:
        first = list(csv.DictReader(handle))
    with open(log, "a") as handle:  # epoch 2 finished, but the process died before its checkpoint
        handle.write("2,6,1.000e-04,0.9,0.9,0.9,1.0\n")
    pretrain(train, val, tmp_path / "run", _settings(), resume=True, progress=False)
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0] == first[0] and rows[1]["val_loss"] != "0.9"


@pytest.mark.filterwarnings("ignore::ecgsoup.hardware.SlowPrecisionWarning")  # bf16 on purpose
def test_resume_may_change_precision_and_records_it(ptbxl_val, tmp_path):
    # bf16 is emulated (and many times slower) on CPUs without bf16 instructions, so a long
    # run started on one machine can resume in float32 on another; the switch is recorded.
    train, val = ptbxl_val[:24], ptbxl_val[24:32]
    pretrain(train, val, tmp_path, _settings(precision="bfloat16", keep_epochs=(1, 2)), max_steps=3, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        pretrain(train, val, tmp_path, _settings(precision="float32", seed=4), resume=True, progress=False)
    pretrain(train, val, tmp_path, _settings(precision="float32", keep_epochs=(1, 2)), resume=True, progress=False)
    assert load_model(tmp_path / "epoch-001").metadata["precision_history"] == [[0, "bfloat16"]]
    assert load_model(tmp_path / "epoch-002").metadata["precision_history"] == [[0, "bfloat16"], [3, "float32"]]
    assert json.loads((tmp_path / "settings.json").read_text())["precision"] == "float32"


def test_auto_precision_follows_the_cpu(ptbxl_val, tmp_path, monkeypatch):
    import ecgsoup.hardware as hardware

    train, val = ptbxl_val[:8], ptbxl_val[8:10]
    for native, expected in ((False, "float32"), (None, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(hardware, "cpu_has_bf16", lambda native=native: native)
        out = tmp_path / str(native)
        pretrain(train, val, out, _settings(precision="auto"), max_steps=1, progress=False)
        assert json.loads((out / "settings.json").read_text())["precision"] == expected
    with pytest.raises(ValueError, match="expected 'auto', 'bfloat16' or 'float32'"):
        pretrain(train, val, tmp_path / "bad", _settings(precision="fp16"), progress=False)


def test_pretrain_warns_when_bf16_is_emulated(ptbxl_val, tmp_path, monkeypatch):
    import ecgsoup.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    with pytest.warns(hardware.SlowPrecisionWarning, match="without bf16 instructions.*use precision='float32'"):
        pretrain(ptbxl_val[:8], ptbxl_val[8:10], tmp_path, _settings(precision="bfloat16"), max_steps=1, progress=False)


# scripts/export_model.py: a pretraining run packaged as a shipped model with its card.


def test_reproduce_command_is_one_uninterrupted_run_to_the_snapshot():
    run = ("ecgsoup pretrain --data /work/shared/data/x.npz --epochs 400 --threads 1 "
           "--keep-epochs 45 100 200 --out runs/r --quiet --precision float32 --resume")  # fmt: skip
    assert _reproduce_command(run, 166, 3818, {"epochs": 400}) == (
        "ecgsoup pretrain --data ../shared/data/x.npz --epochs 400 --threads 1 --out runs/r --quiet "
        "--keep-epochs 166 --max-steps 3818"
    )
    # The last epoch of the schedule needs no stop.
    assert _reproduce_command("ecgsoup pretrain --epochs 2 --resume", 2, 6, {"epochs": 2}) == "ecgsoup pretrain --epochs 2"


@pytest.mark.filterwarnings("ignore::ecgsoup.hardware.SlowPrecisionWarning")  # bf16 on purpose
def test_export_of_a_kept_snapshot_writes_weights_log_and_card(ptbxl_val, tmp_path):
    data = ptbxl_val
    settings = dict(epochs=3, batch_size=8, keep_epochs=(2,))
    run = tmp_path / "run"
    pretrain(data[:16], data[16:24], run, _settings(precision="bfloat16", **settings), max_steps=2,
             progress=False, metadata={"command": "ecgsoup pretrain --epochs 3 --out run", "n_train": 16, "n_val": 8})
    pretrain(data[:16], data[16:24], run, _settings(precision="float32", **settings), resume=True,
             progress=False, metadata={"command": "ecgsoup pretrain --epochs 3 --out run --resume", "n_train": 16, "n_val": 8})
    out = tmp_path / "model"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_model.py"), str(run), str(out), "--encoder", "epoch-002",
         "--selection", "a test", "--why", "it is a test", "--notes", "Stopped early on purpose."],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    model = load_model(out)
    assert model.metadata["epoch"] == 2 and model.metadata["command"].endswith("--keep-epochs 2 --max-steps 4")
    card = (out / "MODEL_CARD.md").read_text()
    assert "bf16 autocast then float32 from step 2 (resumed on a CPU without bf16 instructions) on CPU" in card
    assert "2 of 3 epochs" in card and "## Training length\nStopped early on purpose." in card
    assert (out / "training_log.csv").read_text().count("\n") == 3  # header and epochs 1-2, not epoch 3
    assert "--resume" not in card
