"""The embedding store never deletes what is not its own, has one writer, and survives Ctrl-C.

Issue 10, items 1-4: ``--overwrite`` deleted the input, a CSV and a foreign zarr
group; two writers on one store mixed models or lost a run; Ctrl-C printed a
traceback and the default block held a whole 200-record run; ``store`` and
``distributed`` imported each other and ``store`` used private helpers of ``io``.
"""

import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import ecgsoup
from ecgsoup.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from ecgsoup.store import (
    DEFAULT_CHUNK_SIZE,
    EmbedInterrupted,
    StoreError,
    StoreLockedError,
    embed_to_store,
    is_store,
    open_store,
)

PACKAGE = Path(ecgsoup.__file__).resolve().parent


@pytest.fixture
def ludb_npz(ludb, tmp_path):
    """Four real LUDB records (500 Hz, 12 leads, microvolts) as an input .npz."""
    path = tmp_path / "data.npz"
    np.savez(path, x=ludb["x"][:4], fs=ludb["fs"], lead_names=ludb["lead_names"],
             record_id=ludb["record_id"][:4], units=ludb["units"])  # fmt: skip
    return path


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- item 1: --overwrite removes only an ecgsoup store --------------------------------------------


def test_overwrite_never_deletes_the_input(ludb_npz, tmp_path, capsys):
    before = ludb_npz.read_bytes()
    # Was: the input deleted, then a KeyError traceback.
    status = main(["embed", str(ludb_npz), "--out", str(ludb_npz), "--overwrite", "--model", "random", "--quiet"])
    assert status == EXIT_USAGE
    _one_error_line(capsys, "is the input itself")
    assert ludb_npz.read_bytes() == before

    # The input inside the folder named as the store (a zarr folder holding the records).
    folder = tmp_path / "records.zarr"
    folder.mkdir()
    inside = folder / "data.npz"
    inside.write_bytes(before)
    status = main(["embed", str(inside), "--out", str(folder), "--overwrite", "--model", "random", "--quiet"])
    assert status == EXIT_USAGE
    _one_error_line(capsys, "contains the input")
    assert inside.read_bytes() == before


def test_is_store_only_for_a_store(ludb_npz, tmp_path):
    plain = tmp_path / "plain.npy"
    np.save(plain, np.arange(3))  # was: a TypeError from is_store
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    assert not any(is_store(tmp_path / name) for name in ("plain.npy", "empty", "table.csv", "missing.npz"))
    assert not is_store(ludb_npz)  # an .npz, but an input
    embed_to_store(ludb_npz, tmp_path / "s.npz", model="random", limit=1)
    assert is_store(tmp_path / "s.npz")


def test_overwrite_refuses_a_file_that_is_not_a_store(ludb_npz, tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    notes.write_text("record_id,comment\n1,keep me\n")
    status = main(["embed", str(ludb_npz), "--out", str(notes), "--format", "npz", "--overwrite",
                   "--model", "random", "--quiet"])  # fmt: skip
    assert status == EXIT_USAGE
    _one_error_line(capsys, "Refusing to overwrite", "not an ecgsoup embedding store")
    assert notes.read_text() == "record_id,comment\n1,keep me\n"
    assert not (tmp_path / "notes.csv.lock").exists()  # refused before anything was created


def test_overwrite_refuses_a_foreign_zarr_group(ludb_npz, tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    other = tmp_path / "other.zarr"
    group = zarr.open_group(str(other), mode="w")
    group.create_array("data", data=np.arange(5))
    group.attrs["owner"] = "someone else"
    status = main(["embed", str(ludb_npz), "--out", str(other), "--overwrite", "--model", "random", "--quiet"])
    assert status == EXIT_USAGE
    _one_error_line(capsys, "Refusing to overwrite", "not an ecgsoup embedding store")
    assert np.array_equal(zarr.open_group(str(other), mode="r")["data"][:], np.arange(5))


def test_overwrite_replaces_an_ecgsoup_store_but_not_one_holding_other_files(ludb_npz, tmp_path):
    pytest.importorskip("zarr")
    store = tmp_path / "s.zarr"
    embed_to_store(ludb_npz, store, model="random", limit=2)
    assert is_store(store)
    summary = embed_to_store(ludb_npz, store, model="random", overwrite=True)
    assert (summary.n_done, summary.n_reused) == (4, 0)  # started over

    (store / "my-notes.txt").write_text("not ecgsoup's")
    with pytest.raises(StoreError, match=r"besides the store it holds \['my-notes.txt'\]"):
        embed_to_store(ludb_npz, store, model="random", overwrite=True)
    assert (store / "my-notes.txt").exists()


# --- item 2: one writer, atomic creation, metadata checked as one unit, version ----------------------


_HOLDER = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    # A process started in the background by a shell inherits SIGINT as "ignored", and Python then
    # never turns Ctrl-C into KeyboardInterrupt; a user's terminal does not, so restore the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ecgsoup.embedding import LayerwiseEmbedder

    go = pathlib.Path(sys.argv[1])
    transform = LayerwiseEmbedder.transform

    def paused(self, X):  # the first chunk: the lock is held and the store exists; wait for the test
        print("embedding", flush=True)
        while not go.exists():
            time.sleep(0.05)
        return transform(self, X)

    LayerwiseEmbedder.transform = paused
    from ecgsoup.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _cli(*args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ecgsoup.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, **kwargs)  # fmt: skip


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a child process")
def test_second_writer_is_refused_naming_the_holder_and_ctrl_c_saves(ludb_npz, tmp_path):
    """Two real processes: a first `ecgsoup embed` holds the lock, a second one is refused at once."""
    store = tmp_path / "s.npz"
    go = tmp_path / "go"
    command = ["embed", str(ludb_npz), "--out", str(store), "--model", "random", "--chunk-size", "2", "--quiet"]
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(go), *command], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "embedding", first.stderr.read()
        assert is_store(store)  # created (atomically) before any chunk runs

        started = time.monotonic()
        second = _cli(*command)
        assert second.returncode == EXIT_USAGE
        assert "is being written by another ecgsoup run" in second.stderr
        assert f"pid {first.pid} on " in second.stderr and "embed" in second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert time.monotonic() - started < 120  # refused at once: no waiting on the lock

        # Ctrl-C on the holder (paused in its first chunk): one line, status 130.
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == EXIT_INTERRUPTED, err
        assert err == (
            "ecgsoup embed: interrupted: 0 of 4 records saved; run the same command again to resume\n"
        )
    finally:
        if first.poll() is None:
            first.kill()
    # The lock died with its holder: the same command (here in-process) now completes the store.
    assert main(command) == EXIT_OK
    assert open_store(store).attrs["n_done"] == 4


def test_lock_is_held_for_the_whole_run_in_process_too(ludb_npz, tmp_path):
    from ecgsoup.store import store_lock

    store = (tmp_path / "s.npz").resolve()
    with store_lock(store):
        with pytest.raises(StoreLockedError, match=rf"pid {os.getpid()} on "):
            embed_to_store(ludb_npz, store, model="random")
    assert embed_to_store(ludb_npz, store, model="random").n_done == 4
    assert not Path(f"{store}.lock.json").exists()  # the holder's note leaves with it


def test_store_creation_is_atomic(ludb_npz, tmp_path, monkeypatch):
    zarr = pytest.importorskip("zarr")
    create_array = zarr.Group.create_array

    def crash(self, name, **kwargs):  # the first array is written, the disk fills up at the second
        if name != "embeddings":
            raise OSError("disk full")
        return create_array(self, name, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", crash)
    with pytest.raises(OSError, match="disk full"):
        embed_to_store(ludb_npz, tmp_path / "s.zarr", model="random")
    assert not (tmp_path / "s.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if ".creating-" in p.name]


def test_damaged_store_is_refused_as_a_unit_then_overwritten(ludb_npz, tmp_path, capsys):
    import shutil

    pytest.importorskip("zarr")
    store = tmp_path / "s.zarr"
    embed_to_store(ludb_npz, store, model="random")
    shutil.rmtree(store / "status")  # was: a raw KeyError: 'status'
    with pytest.raises(StoreError, match=r"damaged ecgsoup store \(array 'status' is missing\)"):
        open_store(store)
    args = ["embed", str(ludb_npz), "--out", str(store), "--model", "random", "--quiet"]
    assert main(args) == EXIT_USAGE
    _one_error_line(capsys, "damaged ecgsoup store", "--overwrite")
    assert main([*args, "--overwrite"]) == EXIT_OK
    assert open_store(store).attrs["n_done"] == 4


def test_resume_checks_the_ecgsoup_version(ludb_npz, tmp_path):
    import json

    store = tmp_path / "s.npz"
    embed_to_store(ludb_npz, store, model="random", limit=2)
    # The same store as another ecgsoup version would have written it.
    arrays = dict(np.load(store, allow_pickle=False))
    attrs = json.loads(str(arrays["attrs"]))
    arrays["attrs"] = np.asarray(json.dumps({**attrs, "ecgsoup_version": "0.0.1"}))
    np.savez(store, **arrays)
    with pytest.raises(StoreError, match=rf"ecgsoup_version: store has '0.0.1', this run '{ecgsoup.__version__}'"):
        embed_to_store(ludb_npz, store, model="random")


# --- item 3: Ctrl-C and the default chunk size ---------------------------------------------------------


def test_ctrl_c_prints_one_line_keeps_finished_chunks_and_resumes(ludb_npz, tmp_path, monkeypatch, capsys):
    from ecgsoup.embedding import LayerwiseEmbedder

    transform, calls = LayerwiseEmbedder.transform, []

    def interrupted_in_second_chunk(self, X):  # one call per chunk: its records are of one length
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return transform(self, X)

    monkeypatch.setattr(LayerwiseEmbedder, "transform", interrupted_in_second_chunk)
    store = tmp_path / "s.npz"
    args = ["embed", str(ludb_npz), "--out", str(store), "--model", "random", "--chunk-size", "2", "--quiet"]
    assert main(args) == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert captured.err == "ecgsoup embed: interrupted: 2 of 4 records saved; run the same command again to resume\n"
    with pytest.warns(UserWarning, match="2 of 4 records are not embedded yet"):
        assert open_store(store).attrs["n_done"] == 2

    monkeypatch.setattr(LayerwiseEmbedder, "transform", transform)
    summary = embed_to_store(ludb_npz, store, model="random", chunk_size=2)
    assert (summary.n_done, summary.n_computed, summary.n_reused) == (4, 2, 2)


def test_library_interrupt_is_a_keyboard_interrupt_with_counts(ludb_npz, tmp_path, monkeypatch):
    from ecgsoup.embedding import LayerwiseEmbedder

    def interrupt(self, X):
        raise KeyboardInterrupt

    monkeypatch.setattr(LayerwiseEmbedder, "transform", interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        embed_to_store(ludb_npz, tmp_path / "s.npz", model="random")
    assert isinstance(caught.value, EmbedInterrupted)
    assert (caught.value.n_saved, caught.value.n_records) == (0, 4)


def test_default_chunk_loses_at_most_about_a_minute():
    from ecgsoup.cli import build_parser

    # A 200-record run is several chunks, so a kill never loses all of it.  At about 7 records/s
    # (a busy 2-vCPU machine) 64 records are ~10 s of work.
    assert DEFAULT_CHUNK_SIZE == 64 and DEFAULT_CHUNK_SIZE / 7 < 60
    args = build_parser().parse_args(["embed", "x.npz", "--out", "s.npz"])
    assert args.chunk_size == DEFAULT_CHUNK_SIZE


# --- item 4: io lists, store stores, distributed schedules the store's chunks; no cycle ---------------------


def _sources(module: str) -> list[Path]:
    folder = PACKAGE / module
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{module}.py"]


def _ecgsoup_imports(module: str, top_level: bool = False) -> list[tuple[str, str]]:
    """``(module, name)`` of every ecgsoup import of a module or package (only those run on import)."""
    found = []
    for source in _sources(module):
        tree = ast.parse(source.read_text())
        for node in tree.body if top_level else ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecgsoup"):
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(alias.name, "") for alias in node.names if alias.name.startswith("ecgsoup")]
    return found


def test_store_and_distributed_have_no_import_cycle():
    # distributed builds on store; store imports it only inside a run given a Dask client.
    assert not [m for m, _ in _ecgsoup_imports("store", top_level=True) if m == "ecgsoup.distributed"]
    assert ("ecgsoup.store", "embed_chunk") in _ecgsoup_imports("distributed", top_level=True)
    assert "\ndef run_chunks(" in (PACKAGE / "distributed.py").read_text()
    loaded = subprocess.run([sys.executable, "-c", "import sys, ecgsoup.store; print('ecgsoup.distributed' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert loaded.stdout.strip() == "False", loaded.stderr
    # store persists, it never reaches forward into fusion, evaluation or the command line.
    store_imports = _ecgsoup_imports("store")
    forward = ("ecgsoup.fusion", "ecgsoup.evaluate", "ecgsoup.benchmark", "ecgsoup.cli", "ecgsoup.pma")
    assert not [m for m, _ in store_imports + _ecgsoup_imports("distributed") if m.startswith(forward)]
    # store uses io's public listing, none of its private helpers.
    assert ("ecgsoup.io", "list_records") in store_imports
    assert not [(m, n) for m, n in store_imports if m.startswith("ecgsoup.io") and (n.startswith("_") or "._" in m)]
    assert not [source for source in _sources("store") if "io._" in source.read_text()]
    assert not [(m, n) for m, n in _ecgsoup_imports("io") if m.startswith(("ecgsoup.store", "ecgsoup.distributed"))]


def test_list_records_is_public(ludb_npz, shared_data):
    from ecgsoup.io import list_records

    listing = list_records(ludb_npz)
    assert len(listing) == 4 and listing.record_ids == [int(v) for v in np.load(ludb_npz)["record_id"]]
    record = listing.source.read(listing.items[1], listing.record_ids[1])
    assert record.signal.shape == (5000, 12) and record.fs == 500
    ptbxl = list_records(shared_data / "ptbxl_sample", ptbxl_rate=500)
    assert len(ptbxl) == 30 and ptbxl.items[0].startswith("records500/")


def test_store_repr_is_short(tmp_path):
    import numpy as np
    import pandas as pd

    from ecgsoup.layers import LayerSpec
    from ecgsoup.store import StoredEmbeddings

    store = StoredEmbeddings(np.zeros((200, 2496), np.float32), list(range(200)),
                             {"n_done": 200, "n_records": 200, "n_failed": 0, "n_layers": 13, "n_features": 2496,
                              "model_sha256": "d28601d614e27405c0af", "config": {"name": "ecgsoup-100hz-tiny"},
                              "layer_spec": LayerSpec.equal_blocks(13, 192).to_dict()},
                             pd.DataFrame(columns=["record_id", "message"]))  # fmt: skip
    text = repr(store)
    assert text == ("StoredEmbeddings(200 of 200 records embedded, 0 failed; 13 layers, 2496 columns; "
                    "model ecgsoup-100hz-tiny, sha256 d28601d614e2)")  # fmt: skip
