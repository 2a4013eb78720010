"""scripts/export_model.py: a pretraining run packaged as a shipped model with its card."""

import subprocess
import sys
from pathlib import Path

import pytest

from ecgsoup.models import get_config, load_model
from ecgsoup.pretraining import PretrainSettings, load_pretraining_arrays, pretrain

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from export_model import _reproduce_command  # noqa: E402

SMALL = get_config("ecgsoup-100hz-tiny").replace(name="test-small", width=64, heads=2, dim_head=32, mlp_dim=128, depth=2)
DECODER = dict(decoder_dim=32, decoder_depth=1, decoder_heads=2, decoder_dim_head=16)


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
def test_export_of_a_kept_snapshot_writes_weights_log_and_card(shared_data, tmp_path):
    data = load_pretraining_arrays(shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_val.npz", SMALL)
    settings = dict(config=SMALL, epochs=3, warmup_epochs=1, batch_size=8, checkpoint_every=2, decoder=DECODER,
                    keep_epochs=(2,))  # fmt: skip
    run = tmp_path / "run"
    pretrain(data[:16], data[16:24], run, PretrainSettings(precision="bfloat16", **settings), max_steps=2,
             progress=False, metadata={"command": "ecgsoup pretrain --epochs 3 --out run", "n_train": 16, "n_val": 8})
    pretrain(data[:16], data[16:24], run, PretrainSettings(precision="float32", **settings), resume=True,
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
