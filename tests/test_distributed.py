"""Scale-out with Dask: a store embedded on a 2-process cluster equals the in-process one."""

import numpy as np
import pytest

from ecgsoup.store import SkippedRecordWarning, embed_to_store, embedder_memo_info, open_store

distributed = pytest.importorskip("dask.distributed")
pytest.importorskip("zarr")


def test_cluster_store_equals_in_process_store(ludb, tmp_path):
    # 20 real LUDB records (500 Hz, 12 leads), two with a gap of NaN samples: bad records
    # must be reported the same way by the workers.
    x = ludb["x"][:20].astype(np.float32)
    x[[4, 13], 100:200, 2] = np.nan
    source = tmp_path / "ludb20.npz"
    np.savez(source, x=x, fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=ludb["record_id"][:20],
             units=ludb["units"])  # fmt: skip
    options = dict(model="random", chunk_size=4)

    with pytest.warns(SkippedRecordWarning) as caught:
        local = embed_to_store(source, tmp_path / "local.zarr", **options)
    assert [str(w.message).split(":")[0] for w in caught] == ["Skipped record 5", "Skipped record 14"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        with pytest.warns(SkippedRecordWarning) as caught:
            remote = embed_to_store(source, tmp_path / "cluster.zarr", client=client, **options)
        assert sorted(str(w.message).split(":")[0] for w in caught) == ["Skipped record 14", "Skipped record 5"]
        # Both workers took chunks, and each loaded the model exactly once (its cached embedder).
        loaded = client.run(embedder_memo_info)
    assert sorted(info["embedders"] for info in loaded.values()) == [1, 1]
    assert (remote.n_done, remote.n_failed, remote.n_pending) == (local.n_done, local.n_failed, 0) == (18, 2, 0)

    a, b = open_store(tmp_path / "local.zarr"), open_store(tmp_path / "cluster.zarr")
    assert a.record_ids == b.record_ids and 5 not in b.record_ids and 14 not in b.record_ids
    # Same chunks, same batches, same kernels: bit-identical, not merely close.
    np.testing.assert_array_equal(a.X, b.X)
    assert b.errors["record_id"].tolist() == [5, 14] and b.errors["message"].str.contains("NaN").all()
    assert a.attrs["model_sha256"] == b.attrs["model_sha256"]
    # the cluster's store describes its columns with the same layer spec (readout included)
    assert a.layer_spec.to_dict() == b.layer_spec.to_dict() and b.X.shape[1] == b.layer_spec.n_features


def test_cluster_failure_that_is_not_a_bad_record_propagates(ludb, tmp_path):
    from ecgsoup.distributed import run_chunks
    from ecgsoup.io import list_records
    from ecgsoup.store import StoreError

    source = tmp_path / "ludb2.npz"
    np.savez(source, x=ludb["x"][:2], fs=ludb["fs"], lead_names=ludb["lead_names"])
    listing = list_records(source)
    tasks = [(listing.source, listing.items, listing.record_ids, np.arange(2))]
    settings = dict(batch_size=8, device="cpu", precision="float32", window_stride=None)
    with distributed.Client(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as client:
        # The client claims another model hash than the worker loads: refuse, never mix models.
        with pytest.raises(StoreError, match="same weights"):
            run_chunks(client, tasks, lambda result: None, model="random:ecgsoup-100hz-tiny",
                       settings=settings, fingerprint="0" * 64, lead_map=None, pad="error")  # fmt: skip


def test_run_blocks_is_a_deprecated_alias_of_run_chunks():
    import ecgsoup.distributed
    import ecgsoup.store

    with pytest.warns(FutureWarning, match="use ecgsoup.distributed.run_chunks"):
        assert ecgsoup.distributed.run_blocks is ecgsoup.distributed.run_chunks
    with pytest.warns(FutureWarning, match="use ecgsoup.distributed.run_chunks"):
        assert ecgsoup.store.run_blocks is ecgsoup.distributed.run_chunks
