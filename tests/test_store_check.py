"""A damaged store never reads as finished: it is verified on open and repaired on resume (issue 26).

Stores of four real LUDB records (two blocks of two) are damaged the ways a
copy, a full disk or a sync tool damages them: a chunk file deleted or cut
short, an id chunk lost, ids duplicated, statuses that contradict the
embeddings.  Opening names the damaged records and leaves them out; a resume
re-embeds exactly those, to the numbers of an undamaged run.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecgsoup.cli import EXIT_OK, EXIT_USAGE, main
from ecgsoup.store import StoreDamageWarning, StoreError, embed_to_store, open_store


@pytest.fixture(scope="module")
def ludb_input(ludb, tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "data.npz"
    np.savez(path, x=ludb["x"][:4], fs=ludb["fs"], lead_names=ludb["lead_names"],
             record_id=ludb["record_id"][:4], units=ludb["units"])  # fmt: skip
    return path


@pytest.fixture(scope="module")
def intact(ludb_input, tmp_path_factory):
    """A finished zarr store (chunks of 2 records) and what it reads as."""
    store = tmp_path_factory.mktemp("intact") / "s.zarr"
    embed_to_store(ludb_input, store, model="random", chunk_size=2)
    return store, open_store(store)


def _copy(intact, tmp_path) -> Path:
    store = tmp_path / "s.zarr"
    shutil.copytree(intact[0], store)
    return store


def _embed(source, store, capsys):
    status = main(["embed", str(source), "--out", str(store), "--model", "random", "--chunk-size", "2", "--quiet"])
    return status, capsys.readouterr()


@pytest.mark.parametrize("damage", ["delete", "truncate"])
@pytest.mark.parametrize("array", ["embeddings", "status"])
def test_lost_or_cut_chunk_is_named_left_out_and_re_embedded(intact, ludb_input, tmp_path, capsys, damage, array):
    store, (X, ids, _, _) = _copy(intact, tmp_path), intact[1]
    chunk = store / array / "c" / ("1/0" if array == "embeddings" else "1")  # 2-D embeddings
    assert chunk.is_file()
    chunk.unlink() if damage == "delete" else chunk.write_bytes(chunk.read_bytes()[:7])
    # Was: records 3 and 4 read as all-zero rows (or a Zstd traceback), and a resume said "4 of 4, 0 computed".
    with pytest.warns(StoreDamageWarning, match=rf"2 record\(s\) \({ids[2]!r}, {ids[3]!r}\) have .*{array} chunk"):
        stored = open_store(store)
    assert stored.record_ids == ids[:2] and stored.attrs["n_damaged"] == 2 and stored.attrs["n_done"] == 2
    np.testing.assert_array_equal(stored.X, X[:2])

    status, out = _embed(ludb_input, store, capsys)
    assert status == EXIT_OK, out.err
    assert "2 computed" in out.out and "Repaired: 2 damaged record(s)" in out.out
    assert f"{store} is damaged: 2 record(s)" in out.err and "This run re-embeds them" in out.err
    repaired = open_store(store)
    assert repaired.record_ids == ids
    np.testing.assert_allclose(repaired.X, X, rtol=0, atol=1e-6)


def test_lost_id_chunk_refuses_to_open_and_resume_restores_the_ids(intact, ludb_input, tmp_path, capsys):
    store, (X, ids, _, _) = _copy(intact, tmp_path), intact[1]
    (store / "record_id" / "c" / "0").unlink()
    # Was: 4 records with id 0.
    with pytest.raises(StoreError, match=r"the ids of 4 record\(s\) are lost .* Run `ecgsoup embed` again"):
        open_store(store)
    status, out = _embed(ludb_input, store, capsys)
    assert status == EXIT_OK and "0 computed" in out.out, out
    stored = open_store(store)
    assert stored.record_ids == ids
    np.testing.assert_array_equal(stored.X, X)


def test_resume_still_refuses_another_input_when_ids_are_lost(intact, ludb, tmp_path, capsys):
    store = _copy(intact, tmp_path)
    (store / "record_id" / "c" / "0").unlink()
    other = tmp_path / "other.npz"
    np.savez(other, x=ludb["x"][4:8], fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=ludb["record_id"][4:8])
    status, out = _embed(other, store, capsys)
    assert status == EXIT_USAGE and "of another input listing" in out.err and out.err.count("\n") == 1


def _npz_store(ludb_input, tmp_path, **changes):
    """An npz store of the four records, with some of its arrays replaced."""
    store = tmp_path / "s.npz"
    embed_to_store(ludb_input, store, model="random", chunk_size=2)
    with np.load(store) as data:
        arrays = {key: data[key] for key in data.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key].copy())
    np.savez(store, **arrays)
    return store


def test_duplicated_ids_in_a_store_are_refused(ludb_input, tmp_path, capsys):
    def duplicate(ids):
        ids[3] = ids[1]
        return ids

    store = _npz_store(ludb_input, tmp_path, record_id=duplicate)
    with pytest.raises(StoreError, match=r"1 id\(s\) are shared by several records \(2 x2\)"):
        open_store(store)
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,y\n1,a\n2,b\n3,a\n4,b\n")
    status = main(["evaluate", str(store), "--labels", str(labels), "--target", "y", "--cv", "2"])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and "shared by several records" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(status=lambda s: np.where(np.arange(4) == 2, 7, s).astype(np.int8)), "a status that is none of"),
        (dict(embeddings=lambda e: np.where(np.arange(4)[:, None] == 2, np.nan, e).astype(np.float32)),
         "embeddings that are not finite"),
        (dict(embeddings=lambda e: np.where(np.arange(4)[:, None] == 2, 0, e).astype(np.float32)),
         "all-zero embeddings marked done"),
        (dict(status=lambda s: np.where(np.arange(4) == 2, 2, s).astype(np.int8)), "failed without a message"),
    ],
    ids=["unknown-status", "nan", "zeros", "failed-no-message"],
)
def test_inconsistent_statuses_are_damage(ludb_input, ludb, tmp_path, capsys, change, reason):
    store = _npz_store(ludb_input, tmp_path, **change)
    with pytest.warns(StoreDamageWarning, match=rf"1 record\(s\) \({int(ludb['record_id'][2])}\) have {reason}"):
        stored = open_store(store)
    assert int(ludb["record_id"][2]) not in stored.record_ids and len(stored.record_ids) == 3
    status, out = _embed(ludb_input, store, capsys)
    assert status == EXIT_OK and "1 computed" in out.out and "4 of 4" in out.out, out
    assert len(open_store(store).record_ids) == 4


def test_version_2_stores_are_two_dimensional_without_norm_arrays(intact):
    store, stored = intact
    meta = json.loads((store / "embeddings" / "zarr.json").read_text())
    assert meta["shape"] == [4, stored.attrs["n_features"]] == [4, stored.X.shape[1]]
    assert not (store / "norm_weight").exists() and not (store / "norm_bias").exists()
    assert stored.layer_spec.n_features == stored.X.shape[1]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda spec: {k: v for k, v in spec.items() if k != "layers"}, r"attribute 'layer_spec' is unreadable"),
        (lambda spec: {**spec, "layers": spec["layers"][:-1]}, r"'layer_spec' describes \d+ columns, 'embeddings' has"),
    ],
    ids=["unreadable", "wrong-width"],
)
def test_damaged_layer_spec_is_refused_on_open_and_on_resume(intact, ludb_input, tmp_path, capsys, damage, reason):
    store = _copy(intact, tmp_path)
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["layer_spec"] = damage(meta["attributes"]["layer_spec"])
    meta_path.write_text(json.dumps(meta))
    # Without its layer specification a store's columns cannot be told apart by layer.
    with pytest.raises(StoreError, match=reason):
        open_store(store)
    status, out = _embed(ludb_input, store, capsys)
    assert status == EXIT_USAGE and "--overwrite" in out.err and out.err.count("\n") == 1
    assert json.loads((store / "zarr.json").read_text())["attributes"]["format"] == "ecgsoup-embeddings"


def test_missing_layer_spec_is_refused(intact, tmp_path):
    store = _copy(intact, tmp_path)
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["layer_spec"]
    (store / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"attribute 'layer_spec' is missing"):
        open_store(store)


def test_npz_store_with_a_damaged_layer_spec_is_refused(ludb_input, tmp_path):
    store = tmp_path / "s.npz"
    embed_to_store(ludb_input, store, model="random", chunk_size=2)
    with np.load(store) as data:
        arrays = {key: data[key] for key in data.files}
    assert arrays["embeddings"].ndim == 2 and "norm_weight" not in arrays
    attrs = json.loads(str(arrays["attrs"]))
    attrs["layer_spec"] = "not a specification"
    arrays["attrs"] = np.asarray(json.dumps(attrs))
    np.savez(store, **arrays)
    with pytest.raises(StoreError, match=r"attribute 'layer_spec' is unreadable"):
        open_store(store)


def test_store_check_module_is_a_deprecated_alias():
    import importlib
    import sys

    import ecgsoup.store

    sys.modules.pop("ecgsoup.store_check", None)
    with pytest.warns(FutureWarning, match="import its names from ecgsoup.store"):
        store_check = importlib.import_module("ecgsoup.store_check")
    assert store_check.check_store is ecgsoup.store.check_store
    assert store_check.StoreDamageWarning is ecgsoup.store.StoreDamageWarning
