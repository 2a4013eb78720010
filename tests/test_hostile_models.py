"""Model folders, options and runs that lie or break, refused with one line (issue 26, round 2).

Each model case damages a copy of a real model folder: the bundled pretrained
ST-MEM model (``config.json`` + ``model.safetensors``) or a HuBERT-ECG folder
written by ``save_backbone``.  Configs that ask for terabytes run in a child
process under an address-space limit, so a regression fails there instead of
exhausting the machine.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from ecgsoup.backbones import WeightsError, load_backbone, sha256_file
from ecgsoup.backbones.stmem import default_model_path
from ecgsoup.cli import EXIT_USAGE, main


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def stmem_dir(tmp_path):
    """A copy of the bundled pretrained model folder (ecgsoup's directory format, version 1)."""
    folder = tmp_path / "stmem"
    shutil.copytree(default_model_path(), folder)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    return folder


@pytest.fixture
def hubert_dir(tmp_path):
    """A HuBERT-ECG folder in the family-neutral format (version 2), from an untrained tiny model."""
    from ecgsoup.backbones import random_backbone, save_backbone

    return save_backbone(random_backbone("hubert-ecg-tiny"), tmp_path / "hubert")


@pytest.fixture
def two_records(ludb, tmp_path):
    """Two real LUDB records as an .npz input."""
    import numpy as np

    path = tmp_path / "two.npz"
    np.savez(path, x=ludb["x"][:2], fs=ludb["fs"], lead_names=ludb["lead_names"])
    return path


def _rewrite(folder, change_tensors=None, change_config=None):
    """Apply the changes and record the new file's sha256, as a careless re-export would."""
    config_path = folder / "config.json"
    info = json.loads(config_path.read_text())
    if change_tensors:
        weights = folder / info["weights"]["file"]
        save_file(change_tensors(load_file(str(weights))), str(weights))
        info["weights"]["sha256"] = sha256_file(weights)
    if change_config:
        change_config(info)
    config_path.write_text(json.dumps(info))
    return folder


# --- weights that are not trained weights ----------------------------------------------------------


def _poison(kind):
    def change(state):
        key = sorted(k for k in state if state[k].ndim == 2)[0]
        if kind == "int":
            state[key] = state[key].to(torch.int64)
        elif kind == "nan":
            state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
        else:
            state[key] = state[key].clone()
            state[key].view(-1)[3] = float("inf")
        return state

    return change


@pytest.mark.parametrize("kind, message", [
    ("int", r"tensor \S+ is int64, not floating point: these are not trained weights"),
    ("nan", r"tensor \S+ holds (\d+) of \1 values that are NaN or infinite: the weights are corrupt"),
    ("inf", r"tensor \S+ holds 1 of \d+ values that are NaN or infinite"),
])  # fmt: skip
@pytest.mark.parametrize("folder", ["stmem_dir", "hubert_dir"])
def test_integer_or_non_finite_tensors_are_refused_at_load(request, folder, kind, message, tmp_path, capsys):
    model = _rewrite(request.getfixturevalue(folder), change_tensors=_poison(kind))
    # Was: loaded and embedded, every value NaN, "6 of 6 embedded".
    with pytest.raises(WeightsError, match=message):
        load_backbone(str(model))
    assert main(["info", "--model", str(model)]) == EXIT_USAGE
    _one_line(capsys, "model.safetensors: tensor ", "--model")


# --- configs that lie about sizes --------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("width", 0, "width=0 is not a positive whole number"),
    ("depth", -3, "depth=-3 is not a positive whole number"),
    ("heads", None, "heads=None is not a positive whole number"),
    ("mlp_dim", 7.5, "mlp_dim=7.5 is not a positive whole number"),
    ("width", 10**6, "width=1000000 is larger than any ECG encoder"),
    ("depth", 10**5, "depth=100000 is larger than any ECG encoder"),
    ("n_samples", 10**11, "n_samples=100000000000 is larger than any ECG encoder"),
    ("sampling_rate", -100, "sampling_rate=-100 is not a plausible ECG rate"),
])  # fmt: skip
def test_stmem_config_sizes_are_refused_naming_the_field(stmem_dir, capsys, field, value, message):
    model = _rewrite(stmem_dir, change_config=lambda info: info["config"].__setitem__(field, value))
    with pytest.raises(WeightsError, match=r"config.json: config: EncoderConfig: " + re.escape(message)):
        load_backbone(str(model))
    assert main(["info", "--model", str(model)]) == EXIT_USAGE
    _one_line(capsys, "config.json", message)


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", 0, "hidden_size=0 is not a positive whole number"),
    ("num_hidden_layers", None, "num_hidden_layers=None is not a positive whole number"),
    ("conv_dim", [32, -1], "conv_dim=(32, -1) is not a positive whole number"),
    ("intermediate_size", 10**6, "intermediate_size=1000000 is larger than any ECG encoder"),
    ("num_hidden_layers", 10**5, "num_hidden_layers=100000 is larger than any ECG encoder"),
])  # fmt: skip
def test_family_config_sizes_are_refused_naming_the_field(hubert_dir, two_records, capsys, field, value, message):
    model = _rewrite(hubert_dir, change_config=lambda info: info["arch"].__setitem__(field, value))
    with pytest.raises(WeightsError, match=r"config.json: arch: HubertECGConfig: " + re.escape(message)):
        load_backbone(str(model))
    assert main(["embed", str(two_records), "--out", str(hubert_dir.parent / "s.npz"), "--model", str(model)]) == EXIT_USAGE
    _one_line(capsys, "config.json", message)


def _under_memory_limit(code: str, headroom_mb: int = 768) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose address space may grow only ``headroom_mb`` after its imports."""
    if not sys.platform.startswith("linux"):
        pytest.skip("address-space limits are tested on Linux")
    prelude = textwrap.dedent(
        f"""
        import resource, os
        import torch, safetensors.torch
        import ecgsoup.backbones, ecgsoup.backbones.stmem, ecgsoup.backbones.hubert_ecg.model
        size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = size + {headroom_mb} * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_sizes_within_bounds_are_compared_with_the_weights_before_anything_is_built(stmem_dir, hubert_dir):
    # Each config is within the bounds but does not fit its weights: built for real, the ST-MEM one
    # needs ~50 GB (width 16384, window 131072) and the HuBERT-ECG one ~40 GB (width 16384, 256 layers).
    def widen(info):
        info["config"].update(width=2**14, mlp_dim=2**16, heads=256, n_samples=2**17, patch_size=2**5)

    _rewrite(stmem_dir, change_config=widen)
    _rewrite(hubert_dir, change_config=lambda info: info["arch"].update(
        hidden_size=2**14, num_hidden_layers=256, num_attention_heads=256, intermediate_size=2**16))
    result = _under_memory_limit(
        f"""
        from ecgsoup.backbones import load_backbone
        for model in ({str(stmem_dir)!r}, {str(hubert_dir)!r}):
            try:
                load_backbone(model)
            except ValueError as error:
                print("refused:", str(error).splitlines()[0])
            else:
                print("accepted")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("refused:") for line in lines), result.stdout
    assert "do not fit ecgsoup-100hz-tiny: wrong shapes: " in lines[0] and "file (192,) vs model (16384,)" in lines[0]
    assert "do not fit hubert-ecg model: " in lines[1] and "Nothing was loaded" in lines[1]


# --- weights files that are not files, or not in the folder --------------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
@pytest.mark.parametrize("folder", ["stmem_dir", "hubert_dir"])
def test_a_weights_file_that_is_not_a_regular_file_is_refused_before_hashing(request, folder, kind, two_records, capsys):
    model = request.getfixturevalue(folder)
    weights = model / "model.safetensors"
    weights.unlink()
    if kind == "device":
        weights.symlink_to("/dev/zero")  # was: hashed forever by embed and info
    elif kind == "fifo":
        os.mkfifo(weights)  # opening it would block until a writer comes
    else:
        weights.mkdir()
    what = {"device": "a device", "fifo": "a FIFO (named pipe)", "folder": "a folder"}[kind]
    with pytest.raises(WeightsError, match=rf"model.safetensors is {what.replace('(', '.').replace(')', '.')}, "
                                           "not a file of weights"):  # fmt: skip
        load_backbone(str(model))
    for command in (["info", "--model", str(model)],
                    ["embed", str(two_records), "--out", str(model.parent / "s.npz"), "--model", str(model)]):
        assert main(command) == EXIT_USAGE
        _one_line(capsys, f"is {what}, not a file of weights")


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/../../outside.safetensors"])
@pytest.mark.parametrize("folder", ["stmem_dir", "hubert_dir"])
def test_a_weights_file_outside_the_model_folder_is_refused(request, folder, name, capsys):
    model = request.getfixturevalue(folder)
    shutil.copy(model / "model.safetensors", model.parent / "outside.safetensors")
    _rewrite(model, change_config=lambda info: info["weights"].__setitem__("file", name))
    with pytest.raises(WeightsError, match=rf"weights.file '{name}' leaves the model folder"):
        load_backbone(str(model))
    assert main(["info", "--model", str(model)]) == EXIT_USAGE
    _one_line(capsys, "leaves the model folder", "name a file inside it")


def test_a_weights_file_named_inside_the_folder_still_loads(stmem_dir):
    (stmem_dir / "weights").mkdir()
    shutil.move(stmem_dir / "model.safetensors", stmem_dir / "weights" / "w.safetensors")
    _rewrite(stmem_dir, change_config=lambda info: info["weights"].__setitem__("file", "weights/../weights/w.safetensors"))
    assert load_backbone(str(stmem_dir)).metadata["pretrained"] is True


# --- options that would be silently ignored ------------------------------------------------------------


@pytest.fixture(scope="module")
def random_store(ludb, tmp_path_factory):
    """Twenty real LUDB records embedded with ``--model random``, and their labels (enough for nested folds)."""
    import numpy as np
    import pandas as pd

    tmp_path = tmp_path_factory.mktemp("random-store")
    source = tmp_path / "twenty.npz"
    np.savez(source, x=ludb["x"][:20], fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=np.arange(20))
    store = tmp_path / "random.npz"
    assert main(["embed", str(source), "--out", str(store), "--model", "random", "--quiet"]) == 0
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"record_id": range(20), "y": ["a", "b"] * 10}).to_csv(labels, index=False)
    return store, labels


@pytest.mark.parametrize("options, shown", [
    (["--model", "random", "--precision", "bfloat16"], "--model random --precision bfloat16"),
    (["--lead-map", "II=ECG2", "--derive-leads"], "--lead-map II=ECG2 --derive-leads"),
    (["--batch-size", "4"], "--batch-size 4"),
])  # fmt: skip
def test_evaluate_refuses_embedding_options_given_with_a_store(random_store, capsys, options, shown):
    store, labels = random_store
    capsys.readouterr()
    # Was: both ignored without a word (the store's model was used).
    status = main(["evaluate", str(store), "--labels", str(labels), "--target", "y", "--cv", "2", *options])
    assert status == EXIT_USAGE
    _one_line(capsys, f"error: {shown}: {store} is a store, so its own model and settings are used",
              f"embed again to change them (ecgsoup embed INPUT --out NEW_STORE {shown})")


def test_a_store_embedded_with_random_weights_is_titled_with_its_model(random_store, capsys):
    store, labels = random_store
    capsys.readouterr()
    assert main(["evaluate", str(store), "--labels", str(labels), "--target", "y", "--positive", "b", "--cv", "2",
                 "--fusions", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "model random:ecgsoup-100hz-tiny (" in out and "stmem-tiny.ecgsoup-ipa" not in out


# --- crashes that are one line now ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrain_run(shared_data, tmp_path_factory):
    """A two-step pretraining run on 24 real PTB-XL windows; returns the CLI arguments and its folder."""
    import numpy as np

    from ecgsoup.backbones.stmem import get_config
    from ecgsoup.pretraining import load_pretraining_arrays

    config = get_config("ecgsoup-100hz-tiny")
    arrays = load_pretraining_arrays(shared_data / "ptbxl_zscored_subset" / "ptbxl_zscored_250hz_val.npz", config)
    tmp = tmp_path_factory.mktemp("pretrain")
    shard = tmp / "shard.npz"
    np.savez(shard, x=np.swapaxes(arrays[:24], 1, 2), fs=100, lead_names=np.array(config.lead_names))
    args = ["pretrain", "--data", str(shard), "--config", config.name, "--epochs", "1", "--batch-size", "8",
            "--max-steps", "2", "--quiet"]  # fmt: skip
    assert main([*args, "--out", str(tmp / "run")]) == 0
    return args, tmp / "run"


@pytest.mark.parametrize("damage, message", [
    ("empty", "checkpoint.pt is empty (a run killed while it was first written?)"),
    ("truncated", "checkpoint.pt cannot be read as a checkpoint (truncated or corrupt: "),
    ("foreign", "checkpoint.pt is not a checkpoint of `ecgsoup pretrain` (it needs model, optimiser, state and "
                "settings; found ['weight'])"),
    ("other-shapes", "checkpoint.pt does not fit this model and optimiser ("),
    ("fifo", "checkpoint.pt is not a regular file, so it is not a checkpoint"),
])  # fmt: skip
def test_pretrain_resume_from_a_damaged_checkpoint_is_one_line(pretrain_run, tmp_path, capsys, damage, message):
    args, run = pretrain_run
    out = tmp_path / "run"
    shutil.copytree(run, out)
    checkpoint = out / "checkpoint.pt"
    if damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "truncated":
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        torch.save({"weight": torch.zeros(3)}, checkpoint)
    elif damage == "other-shapes":
        saved = torch.load(checkpoint, weights_only=True)
        key = sorted(saved["model"])[0]
        saved["model"][key] = torch.zeros(7, 7)
        torch.save(saved, checkpoint)
    else:
        checkpoint.unlink()
        os.mkfifo(checkpoint)
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--resume"]) == EXIT_USAGE
    err = _one_line(capsys, "ecgsoup pretrain: error: ", message)
    assert "start over without --resume" in err


def _raise(code):
    import errno

    def fail(*args, **kwargs):
        path = next((str(a) for a in args if isinstance(a, (str, os.PathLike))), None)
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), path)

    return fail


@pytest.mark.parametrize("code, fix", [("ENOSPC", "the disk is full: free some space or write elsewhere"),
                                       ("EROFS", "the file system is read-only: choose another location"),
                                       ("EACCES", "choose a location you can write to")])  # fmt: skip
def test_a_full_disk_or_read_only_out_is_one_line(two_records, pretrain_run, tmp_path, monkeypatch, capsys, code, fix):
    import numpy as np

    # The test runs as any user (root ignores permissions), so the failing write is simulated.
    monkeypatch.setattr(np, "savez", _raise(code))
    assert main(["embed", str(two_records), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"]) == 2
    _one_line(capsys, "ecgsoup embed: error: ", fix)
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", _raise(code))
    args, _ = pretrain_run
    assert main([*args, "--out", str(tmp_path / "run")]) == EXIT_USAGE
    _one_line(capsys, "ecgsoup pretrain: error: ", fix)


def test_a_300_character_name_is_one_line(two_records, pretrain_run, tmp_path, capsys):
    long = "x" * 300
    args, _ = pretrain_run
    assert main([*args, "--out", str(tmp_path / long)]) == EXIT_USAGE
    _one_line(capsys, "ecgsoup pretrain: error: ", "File name too long; use a shorter name.")
    assert main(["embed", str(two_records), "--out", str(tmp_path / f"{long}.zarr"), "--model", "random"]) == 2
    _one_line(capsys, "ecgsoup embed: error: ", "use a shorter name")


# --- a --scheduler that is not a Dask scheduler ----------------------------------------------------------


@pytest.fixture
def fake_peer():
    """A local TCP server that greets each connection with ``greeting`` (None: accepts and never answers)."""
    import socket
    import threading

    servers = []

    def start(greeting):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        held = []

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                held.append(conn)
                if greeting is not None:
                    conn.sendall(greeting)

        threading.Thread(target=serve, daemon=True).start()
        servers.append((server, held))
        return f"tcp://127.0.0.1:{server.getsockname()[1]}"

    yield start
    for server, held in servers:
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("greeting, message", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "is not a Dask scheduler: its first bytes b'HTTP/1.1'"),
    (b"\x00" * 7 + b"\x30" + b"garbage", "claim a 3458764513820540928-byte message"),  # was: an attempt at 3 EiB
    (None, "No Dask scheduler answered at 'tcp://127.0.0.1:"),  # was: hung past the advertised 30 s
])  # fmt: skip
def test_a_scheduler_that_answers_garbage_or_nothing_is_one_line_within_the_deadline(
        fake_peer, two_records, tmp_path, monkeypatch, capsys, greeting, message):  # fmt: skip
    import time

    import ecgsoup.distributed

    monkeypatch.setattr(ecgsoup.distributed, "SCHEDULER_TIMEOUT_S", 1.0)
    address = fake_peer(greeting)
    started = time.monotonic()
    status = main(["embed", str(two_records), "--out", str(tmp_path / "s.npz"), "--scheduler", address,
                   "--model", "random", "--quiet"])  # fmt: skip
    elapsed = time.monotonic() - started
    assert status == EXIT_USAGE
    _one_line(capsys, "ecgsoup embed: error: ", message, "Check the address and port")
    assert elapsed < 10, elapsed
    assert not (tmp_path / "s.npz").exists()


def test_a_real_scheduler_passes_the_greeting_check():
    from dask.distributed import LocalCluster

    from ecgsoup.distributed import connect

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", dashboard_address=None) as cluster:
        with connect(scheduler=cluster.scheduler_address, timeout=5.0) as client:
            assert client.scheduler.address == cluster.scheduler_address


# --- Ctrl-C with --workers ---------------------------------------------------------------------------------


def _ignores_ctrl_c() -> bool:
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_local_workers_ignore_ctrl_c_so_only_the_client_reports_it():
    import signal

    from ecgsoup.distributed import connect

    # As in an interactive shell (a run under nohup starts with Ctrl-C ignored, which children inherit).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with connect(workers=1) as client:
            # The worker process leaves Ctrl-C to the client; the client itself still gets it.
            assert list(client.run(_ignores_ctrl_c).values()) == [True]
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and SIGINT as on Linux")
def test_ctrl_c_with_local_workers_is_one_line(ludb, tmp_path):
    import signal
    import time

    import numpy as np

    source = tmp_path / "in.npz"
    np.savez(source, x=ludb["x"][:64], fs=ludb["fs"], lead_names=ludb["lead_names"])
    store = tmp_path / "s.zarr"
    # The client starts with Python's own Ctrl-C handler, as from a terminal, even when this test runs
    # under nohup (which hands children an ignored SIGINT).
    command = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from ecgsoup.cli import main; sys.exit(main(sys.argv[1:]))",
               "embed", str(source), "--out", str(store), "--workers", "1", "--model", "random", "--chunk-size", "2", "--quiet"]
    # Ctrl-C reaches the whole process group: the client and its worker processes.  Was: exit 130 with
    # 69 lines of worker tracebacks and Dask warnings after the client's line.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list(store.glob("**/embeddings/c/1/*")) and time.monotonic() < deadline:  # two chunks written
            time.sleep(0.5)
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    lines = err.splitlines()
    assert child.returncode == 130, err[-2000:]
    assert len(lines) == 1 and re.fullmatch(r"ecgsoup embed: interrupted: \d+ of 64 records saved; run the same "
                                            r"command again to resume", lines[0]), err[-3000:]


# --- units that are not what the input says ------------------------------------------------------------


@pytest.fixture(scope="module")
def ptbxl_uv(shared_data):
    """Six real PTB-XL records at 100 Hz, in microvolts (the sample's units)."""
    import numpy as np

    data = np.load(shared_data / "ptbxl_sample" / "ptbxl_sample_100hz.npz")
    assert str(data["units"]) == "uV"
    return data["x"][:6].astype(np.float64), list(data["lead_names"])


def _feature_warnings(x, leads, units, fs=100):
    import warnings

    from ecgsoup.features import ECGFeatures

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ECGFeatures(sampling_rate=fs, lead_names=leads, units=units).fit_transform(x)
    return [str(w.message) for w in caught if str(w.message).startswith("ECGFeatures:")]


def test_microvolts_given_as_millivolts_are_named_with_the_fix(ptbxl_uv):
    x, leads = ptbxl_uv
    # Was: a QRS amplitude of hundreds of mV without a word.
    (message,) = _feature_warnings(x, leads, "mV")
    assert re.match(r"ECGFeatures: 6 of 6 records have a QRS amplitude above 20 mV \(up to \d+ mV with units='mV'\), "
                    r"which no ECG has: the input looks like microvolts given as millivolts. Pass units='uV'", message)
    (message,) = _feature_warnings(x / 1e6, leads, "uV")  # volts given as microvolts
    assert "no QRS amplitude above 0.02 mV with units='uV'" in message and "Pass units='mV'" in message
    assert _feature_warnings(x, leads, "uV") == [] and _feature_warnings(x / 1000, leads, "mV") == []


def test_range_normalised_leads_given_as_millivolts_are_named(ludb):
    leads = list(ludb["lead_names"])
    # LUDB's leads are each scaled to a peak-to-peak of 1000: read as microvolts, every lead is 1 mV.
    (message,) = _feature_warnings(ludb["x"][:4].astype(float), leads, "uV", fs=500)
    assert message.startswith("ECGFeatures: in 4 of 4 records every lead has the same peak-to-peak amplitude (1000)")
    assert "Pass units='normalized'" in message
    assert _feature_warnings(ludb["x"][:4].astype(float), leads, "normalized", fs=500) == []


# --- flat input in the other estimator's layout ----------------------------------------------------------


def test_flat_input_in_the_other_layout_is_refused_naming_it(shared_data):
    import numpy as np

    from ecgsoup import ECGPreprocessor, LayerwiseEmbedder
    from ecgsoup.backbones.stmem import get_config, random_model

    data = np.load(shared_data / "ptbxl_sample" / "ptbxl_sample_100hz.npz")
    x = data["x"][:8].astype(np.float32) / 1000  # (8, 1000, 12): 10 s at 100 Hz, mV
    leads = list(data["lead_names"])
    time_major = x.reshape(len(x), -1)
    lead_major = x.transpose(0, 2, 1).reshape(len(x), -1)
    pre = ECGPreprocessor(sampling_rate=100, lead_names=leads, model="random")
    # Was: each read the other's layout without a word (cosine 0.01-0.30 to the right embedding).
    with pytest.raises(ValueError, match=r"X \(flat, 12000 columns\) looks lead-major: .* Recordings given flat are "
                                         r"time-major"):  # fmt: skip
        pre.fit_transform(lead_major)
    ready = pre.fit_transform(time_major)
    np.testing.assert_array_equal(ready, pre.fit_transform(x))
    encoder = random_model(get_config("ecgsoup-100hz-tiny").replace(name="test-2blocks", depth=2))
    embedder = LayerwiseEmbedder(model=encoder)
    with pytest.raises(ValueError, match=r"X \(flat, 12000 columns\) looks time-major: .* LayerwiseEmbedder takes the "
                                         r"model-ready lead-major array"):  # fmt: skip
        embedder.fit_transform(time_major)
    np.testing.assert_allclose(embedder.fit_transform(ready), embedder.fit_transform(ready.reshape(8, 12, -1)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("field, value, message", [
    ("window", 10**11, "InputContract: window=100000000000 is larger than any ECG encoder"),
    ("window", None, "InputContract: window=None is not a positive whole number"),
    ("sampling_rate", 0.001, "InputContract: sampling_rate=0.001 is not a plausible ECG rate"),
    ("lead_names", "I II III", "InputContract: lead_names='I II III' must list 1 to 64 lead names"),
])  # fmt: skip
def test_a_contract_that_lies_is_refused_before_any_signal_is_resampled(hubert_dir, field, value, message):
    from ecgsoup import ECGPreprocessor

    _rewrite(hubert_dir, change_config=lambda info: info["contract"].__setitem__(field, value))
    with pytest.raises(WeightsError, match=r"config.json: contract: " + re.escape(message)):
        load_backbone(str(hubert_dir))
    with pytest.raises(WeightsError, match=r"config.json: contract: " + re.escape(message)):
        ECGPreprocessor(sampling_rate=500, lead_names=["I", "II"], model=str(hubert_dir)).fit(
            __import__("numpy").zeros((1, 5000, 2)))
