"""The command line (``embed``, ``evaluate``, ``info``) and the embedding store, on real records.

Every test calls ``ecgsoup.cli.main`` in-process.  Models are untrained:
``--model random`` (the tiny configuration) or a 2-block tiny encoder saved
into a temporary folder, which is ~6x cheaper and exercises the
"model directory" route with its sha256.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ecgsoup.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ecgsoup.store import StoreError, embed_to_store, open_store

PTBXL_IDS = ("00841", "02132", "14039")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A randomly initialised 2-block ecgsoup-100hz-tiny encoder saved as a model directory."""
    from ecgsoup.backbones.stmem import get_config, random_model, save_model

    config = get_config("ecgsoup-100hz-tiny").replace(name="test-100hz-2blocks", depth=2)
    return save_model(random_model(config, seed=1), tmp_path_factory.mktemp("model") / "two-blocks")


def _ludb_npz(ludb, path, n, with_fs=True):
    arrays = dict(x=ludb["x"][:n], lead_names=ludb["lead_names"], record_id=ludb["record_id"][:n],
                  units=ludb["units"])  # fmt: skip
    if with_fs:
        arrays["fs"] = ludb["fs"]
    np.savez(path, **arrays)
    return path


@pytest.fixture
def wfdb_folder(shared_data, tmp_path):
    """Three PTB-XL 100 Hz records copied as a plain WFDB folder, plus a truncated copy of one."""
    source = shared_data / "ptbxl_sample" / "records100"
    folder = tmp_path / "wfdb"
    folder.mkdir()
    for ecg_id in PTBXL_IDS:
        for file in source.glob(f"*/{ecg_id}_lr.*"):
            shutil.copy(file, folder / file.name)
    # A real record whose signal file was cut short (e.g. an interrupted copy).
    header = (folder / "00841_lr.hea").read_text().replace("00841_lr", "99999_lr")
    (folder / "99999_lr.hea").write_text(header)
    (folder / "99999_lr.dat").write_bytes((folder / "00841_lr.dat").read_bytes()[:5000])
    return folder


# --- embed -------------------------------------------------------------------------------------------


def test_embed_wfdb_folder_reports_and_skips_corrupt_record(wfdb_folder, tmp_path, capsys):
    from ecgsoup import ECGPreprocessor, LayerwiseEmbedder
    from ecgsoup.io import read_dataset

    store = tmp_path / "ptbxl.npz"
    status = main(["embed", str(wfdb_folder), "--out", str(store), "--model", "random", "--quiet"])
    out, err = capsys.readouterr()
    assert status == EXIT_PARTIAL
    assert "99999_lr" in err and "truncated" in err
    assert "3 of 4 records embedded, 1 failed" in out

    stored = open_store(store)
    X, ids, attrs, errors = stored
    spec = stored.layer_spec
    assert ids == [f"{i}_lr" for i in PTBXL_IDS]
    assert errors["record_id"].tolist() == ["99999_lr"] and "truncated" in errors["message"][0]
    # [h_0 | ... | h_12] only; the model's constants are in the spec, not in the rows
    assert attrs["n_layers"] == 13 and attrs["n_features"] == 13 * 192 and X.shape == (3, 13 * 192)
    assert attrs["format_version"] == 2 and "dim" not in attrs and spec.n_features == X.shape[1]
    assert attrs["pretrained"] is False and attrs["model_config"]["sampling_rate"] == 100.0
    assert attrs["precision"] == "float32" and len(attrs["model_sha256"]) == 64

    # The store holds exactly what the scikit-learn steps compute from the same records.
    with pytest.warns(UserWarning, match="99999_lr"):
        dataset = read_dataset(wfdb_folder)
    prep = ECGPreprocessor(sampling_rate=dataset.sampling_rate, lead_names=dataset.lead_names,
                           model="ecgsoup-100hz-tiny")  # fmt: skip
    embedder = LayerwiseEmbedder(model="random:ecgsoup-100hz-tiny")
    expected = embedder.fit_transform(prep.fit_transform(dataset.X))
    assert dataset.record_ids == ids
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    # and the spec the embedder describes them with, readout included
    assert spec.same_model(embedder.layer_spec_) and spec.model_id == attrs["model_sha256"]
    assert spec.readout == embedder.layer_spec_.readout and spec.readout.kind == "layernorm"
    assert spec.to_dict() == embedder.layer_spec_.to_dict()


def test_embed_resumes_without_recomputing_and_matches_one_shot(ludb, small_model, tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    source = _ludb_npz(ludb, tmp_path / "ludb6.npz", 6)
    store = tmp_path / "ludb6.zarr"
    args = ["embed", str(source), "--out", str(store), "--model", str(small_model), "--chunk-size", "2", "--quiet"]

    assert main([*args, "--limit", "3"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "3 of 6 records embedded, 0 failed, 3 pending" in out and "again" in out
    with pytest.warns(UserWarning, match="3 of 6 records are not embedded"):
        partial = open_store(store)
    assert partial.record_ids == [1, 2, 3]
    group = zarr.open_group(str(store), mode="r+")
    assert group["embeddings"].chunks == (2, 3 * 192)  # one block of records per chunk
    # Mark a finished row: a resumed run must leave it alone.
    sentinel = np.full(3 * 192, 7.0, np.float32)
    group["embeddings"][0] = sentinel

    assert main(args) == EXIT_OK
    assert "6 of 6 records embedded" in capsys.readouterr().out
    resumed = open_store(store)
    np.testing.assert_array_equal(resumed.X[0], sentinel)

    one_shot = embed_to_store(source, tmp_path / "one_shot.npz", model=small_model, chunk_size=6)
    assert one_shot.n_computed == 6 and one_shot.n_done == 6
    expected = open_store(tmp_path / "one_shot.npz")
    assert resumed.record_ids == expected.record_ids == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(resumed.X[1:], expected.X[1:])
    np.testing.assert_array_equal(partial.X[0], expected.X[0])  # the row before the sentinel


def test_embed_resume_summary_counts_only_new_records(ludb, small_model, tmp_path):
    source = _ludb_npz(ludb, tmp_path / "ludb4.npz", 4)
    first = embed_to_store(source, tmp_path / "s.npz", model=small_model, chunk_size=2, limit=2)
    second = embed_to_store(source, tmp_path / "s.npz", model=small_model, chunk_size=2)
    third = embed_to_store(source, tmp_path / "s.npz", model=small_model, chunk_size=2)
    assert (first.n_computed, first.n_pending) == (2, 2)
    assert (second.n_computed, second.n_reused, second.n_pending) == (2, 2, 0)
    assert (third.n_computed, third.n_reused) == (0, 4)


@pytest.mark.parametrize("suffix", [".npz", ".zarr"])
def test_store_records_the_layer_spec_and_feeds_fusion_estimators(ludb, small_model, tmp_path, suffix):
    from ecgsoup import LayerwiseEmbedder
    from ecgsoup.backbones.stmem import load_model
    from ecgsoup.fusion import PPA, LayerSelector

    if suffix == ".zarr":
        pytest.importorskip("zarr")
    source = _ludb_npz(ludb, tmp_path / "ludb3.npz", 3)
    embed_to_store(source, tmp_path / f"s{suffix}", model=small_model)
    stored = open_store(tmp_path / f"s{suffix}")
    # the spec round-trips: the one the embedder of that model describes its columns with
    spec = stored.layer_spec
    model = load_model(small_model)
    embedder = LayerwiseEmbedder(model=str(small_model)).fit(np.zeros((1, 12 * 1000), np.float32))
    assert spec.same_model(embedder.layer_spec_) and spec.to_dict() == embedder.layer_spec_.to_dict()
    assert [layer.name for layer in spec.layers] == ["layer00", "layer01", "layer02"] and spec.widths == (192,) * 3
    assert spec.model_id == stored.attrs["model_sha256"] == embedder.fingerprint_
    assert spec.readout == model.readout() and spec.readout.eps == model.norm.eps
    assert stored.attrs["layer_spec"] == spec.to_dict() and stored.attrs["n_features"] == spec.n_features
    # ... and is what the fusions read the stored rows with
    H = stored.X.reshape(3, 3, 192)
    np.testing.assert_allclose(PPA(layer_spec=spec).fit_transform(stored.X), spec.readout(H[:, 1:].mean(axis=1)), atol=1e-6)
    np.testing.assert_allclose(LayerSelector(layers=1, layer_spec=spec).fit_transform(stored.X), spec.readout(H[:, 1]), atol=1e-6)
    assert PPA(n_layers=stored.attrs["n_layers"]).fit_transform(stored.X).shape == (3, 192)
    frame = stored.to_frame()
    assert frame.index.tolist() == [1, 2, 3] and frame.columns[-1] == f"{spec.tag}:layer02_dim0191"
    assert PPA(layer_spec=spec).fit(frame).transform(frame).shape == (3, 192)


def test_version_1_store_is_still_readable(ludb, small_model, tmp_path):
    """A store of format 1 (3-D embeddings, the final LayerNorm as two arrays) reads as a spec."""
    source = _ludb_npz(ludb, tmp_path / "ludb2.npz", 2)
    embed_to_store(source, tmp_path / "v2.npz", model=small_model)
    current = open_store(tmp_path / "v2.npz")
    with np.load(tmp_path / "v2.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    attrs = json.loads(str(arrays.pop("attrs")))
    readout = current.layer_spec.readout
    arrays["embeddings"] = arrays["embeddings"].reshape(2, 3, 192)
    arrays["norm_weight"], arrays["norm_bias"] = readout.weight, readout.bias
    for key in ("n_features", "layer_spec", "layout"):
        attrs.pop(key, None)
    attrs.update(format_version=1, dim=192)
    np.savez(tmp_path / "v1.npz", attrs=json.dumps(attrs), **arrays)

    old = open_store(tmp_path / "v1.npz")
    np.testing.assert_array_equal(old.X, current.X)
    assert old.X.shape == (2, 3 * 192) and old.record_ids == current.record_ids
    assert old.layer_spec.same_model(current.layer_spec) and old.layer_spec.readout == readout


def test_embed_ptbxl_root_uses_ecg_ids(shared_data, small_model, tmp_path, capsys):
    root = tmp_path / "ptbxl"
    labels = pd.read_csv(shared_data / "ptbxl_sample" / "labels.csv")
    labels = labels[labels["ecg_id"].isin([841, 2132])]
    for name in labels["filename_lr"]:
        for file in (shared_data / "ptbxl_sample").glob(name + ".*"):
            target = root / file.relative_to(shared_data / "ptbxl_sample")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, target)
    labels.to_csv(root / "labels.csv", index=False)
    status = main(["embed", str(root), "--out", str(tmp_path / "p.npz"), "--model", str(small_model), "--quiet"])
    assert status == EXIT_OK, capsys.readouterr().err
    stored = open_store(tmp_path / "p.npz")
    assert stored.record_ids == [841, 2132] and stored.attrs["source_kind"] == "ptbxl"


def test_embed_npz_without_fs_needs_sampling_rate(ludb, small_model, tmp_path, capsys):
    source = _ludb_npz(ludb, tmp_path / "nofs.npz", 2, with_fs=False)
    out = tmp_path / "s.npz"
    assert main(["embed", str(source), "--out", str(out), "--model", str(small_model)]) == EXIT_USAGE
    assert "--sampling-rate" in capsys.readouterr().err and not out.exists()
    args = ["embed", str(source), "--out", str(out), "--model", str(small_model), "--sampling-rate", "500", "--quiet"]
    assert main(args) == EXIT_OK
    assert open_store(out).X.shape == (2, 3 * 192)  # 2 blocks: h_0, h_1, h_2


def test_resume_with_another_model_is_refused(ludb, small_model, tmp_path):
    source = _ludb_npz(ludb, tmp_path / "ludb2.npz", 2)
    embed_to_store(source, tmp_path / "s.npz", model=small_model, limit=1)
    with pytest.raises(StoreError, match="model_sha256"):
        embed_to_store(source, tmp_path / "s.npz", model="random")
    with pytest.raises(StoreError, match="another input"):
        embed_to_store(_ludb_npz(ludb, tmp_path / "ludb3.npz", 3), tmp_path / "s.npz", model=small_model)


# --- evaluate -----------------------------------------------------------------------------------------


def test_evaluate_ludb_binary_target_from_input_then_store(ludb, shared_data, small_model, tmp_path, capsys):
    source = _ludb_npz(ludb, tmp_path / "ludb40.npz", 40)
    labels = shared_data / "ludb" / "ludb_labels.csv"
    out = tmp_path / "eval"
    common = ["--labels", str(labels), "--target", "conduction", "--task", "binary", "--cv", "3", "--out", str(out)]
    status = main(["evaluate", str(source), *common, "--model", str(small_model), "--quiet"])
    printed = capsys.readouterr().out
    assert status == EXIT_OK
    n_positive = int((pd.read_csv(labels, keep_default_na=False)["conduction"][:40] != "").sum())
    assert f"40 records, target conduction non-empty ({n_positive} positive, {40 - n_positive} negative)" in printed
    assert "nested CV verdict: ROC AUC" in printed and "chosen on these folds (optimistic)" in printed

    table = pd.read_csv(out / "layer_probe.csv", index_col=0)
    assert table.index.tolist() == ["layer_00", "layer_01", "layer_02", "ppa"]  # PMA from 300 records
    assert table["mean"].between(0, 1).all() and table.filter(like="fold_").shape[1] == 3
    assert (out / "layer_probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "embeddings.npz").exists()

    # The store written on the way gives the same table (same folds, same seed).
    again = tmp_path / "again"
    assert main(["evaluate", str(out / "embeddings.npz"), *common[:-1], str(again), "--fusions", "ppa"]) == EXIT_OK
    capsys.readouterr()
    table_again = pd.read_csv(again / "layer_probe.csv", index_col=0)
    pd.testing.assert_frame_equal(table_again, table)


def test_evaluate_positive_value_multiclass_column(ludb, shared_data, small_model, tmp_path, capsys):
    source = _ludb_npz(ludb, tmp_path / "ludb40.npz", 40)
    store = tmp_path / "s.npz"
    embed_to_store(source, store, model=small_model)
    args = ["evaluate", str(store), "--labels", str(shared_data / "ludb" / "ludb_labels.csv"),
            "--target", "rhythm_primary", "--positive", "Sinus rhythm", "--cv", "3", "--fusions", "none"]  # fmt: skip
    assert main(args) == EXIT_OK
    printed = capsys.readouterr().out
    assert "rhythm_primary == 'Sinus rhythm'" in printed and "ppa" not in printed


# --- info ----------------------------------------------------------------------------------------------


def test_info_reports_model_versions_and_hardware(small_model, capsys):
    assert main(["info", "--model", str(small_model), "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    saved = json.loads((small_model / "config.json").read_text())
    assert info["model"]["sha256"] == saved["weights"]["sha256"]
    assert info["model"]["pretrained"] is False and info["model"]["config"]["depth"] == 2
    assert info["versions"]["torch"] and info["versions"]["scikit-learn"]
    assert info["hardware"]["cpu_count"] >= 1 and isinstance(info["hardware"]["cuda_available"], bool)
    assert "ecgsoup-100hz-tiny" in info["configs"]

    assert main(["info", "--model", "random"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "NO, random weights" in text and "sha256:" in text and "CUDA" in text

    assert main(["info", "--configs"]) == EXIT_OK
    listing = capsys.readouterr().out
    assert "st-mem-250hz-base" in listing and "0.67-40 Hz" in listing


def test_info_without_bundled_model_still_succeeds(capsys):
    # Whether or not the bundled weights are installed, plain `info` describes the environment.
    assert main(["info"]) == EXIT_OK
    assert "versions: ecgsoup" in capsys.readouterr().out


# --- user errors: one line on stderr, exit 2, no traceback ---------------------------------------------


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["embed", str(d["tmp"] / "missing"), "--out", str(d["tmp"] / "s.npz")], "no such file"),
        (lambda d: ["embed", str(d["garbage"]), "--out", str(d["tmp"] / "s.npz")], "cannot read the .npz"),
        (lambda d: ["embed", str(d["labels"]), "--out", str(d["tmp"] / "s.npz")], "neither a folder nor a WFDB"),
        (lambda d: ["embed", str(d["npz"]), "--out", str(d["tmp"] / "s.npz"), "--model", "nope"], "No model at"),
        (lambda d: ["embed", str(d["npz"]), "--out", str(d["tmp"] / "store")], "Cannot tell the store format"),
        (lambda d: ["embed", str(d["npz"]), "--out", str(d["tmp"] / "s.npz"), "--lead-map", "II"], "MODEL_LEAD=DATA"),
        (lambda d: ["info", "--model", str(d["tmp"] / "nope")], "No model at"),
        (lambda d: ["evaluate", str(d["npz"]), "--labels", str(d["labels"]), "--target", "nope"], "not a column"),
        (lambda d: ["evaluate", str(d["npz"]), "--labels", str(d["tmp"] / "x.csv"), "--target", "axis"], "no such file"),
        (lambda d: ["evaluate", str(d["npz"]), "--labels", str(d["labels"]), "--target", "axis",
                    "--fusions", "max"], "unknown ['max']"),  # fmt: skip
    ],
    ids=["missing-input", "unreadable-npz", "not-ecg-input", "unknown-model", "store-format", "lead-map",
         "info-unknown-model", "missing-labels-column", "missing-labels-file", "unknown-fusion"],  # fmt: skip
)
def test_user_errors_exit_2_with_one_line(make_args, message, ludb, shared_data, tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("this is not a numpy archive")
    paths = {"tmp": tmp_path, "garbage": garbage, "labels": shared_data / "ludb" / "ludb_labels.csv",
             "npz": _ludb_npz(ludb, tmp_path / "ludb2.npz", 2)}  # fmt: skip
    status = main(make_args(paths))
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert message in err and "Traceback" not in err
    assert err.startswith("ecgsoup ") and err.count("\n") == 1


def test_pretrain_subcommand_still_registered():
    from ecgsoup.cli import build_parser

    args = build_parser().parse_args(["pretrain", "--data", "x.npz", "--out", "run"])
    assert args.command == "pretrain" and args.config == "ecgsoup-100hz-tiny"


def test_version_bare_command_and_defaults_in_help(capsys):
    import ecgsoup

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"ecgsoup {ecgsoup.__version__}"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: ecgsoup" in out and "Exit status: 0 done" in out and "130 interrupted" in out
    for command in (["demo"], ["pretrain"], ["info"], ["benchmark", "ptbxl"], ["embed"], ["evaluate"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "(default:" in text, command
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--cv CV               (default: 5)" in capsys.readouterr().out
