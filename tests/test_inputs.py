"""Input files that used to give a silently wrong answer or a misleading error (issue 10, item 9).

Built from real records of the shared data: a Challenge record (``.hea`` +
``.mat``) rewritten transposed or as MAT-v5, a PTB-XL root with only its
500 Hz copy, a truncated header, and one recording passed to ECGPreprocessor.
"""

import shutil

import numpy as np
import pytest
import scipy.io

from ecgsoup import ECGPreprocessor
from ecgsoup.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ecgsoup.io import RecordError, list_records, read_ptbxl, read_wfdb

CHALLENGE = "A0001"  # CPSC2018, 12 leads, 500 Hz, 7,500 samples, MAT-v4 int16 'val' (12, 7500)


@pytest.fixture
def challenge(shared_data):
    return shared_data / "cinc2020_2021_sample" / "records" / CHALLENGE


def _rewrite(challenge, folder, name, val, **savemat):
    """A copy of the Challenge record under ``name`` whose .mat holds ``val``."""
    folder.mkdir(exist_ok=True)
    header = challenge.with_suffix(".hea").read_text().replace(CHALLENGE, name)
    (folder / f"{name}.hea").write_text(header)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, **savemat)
    return folder / name


# --- .mat signal files checked against their header ---------------------------------------------


@pytest.mark.parametrize(
    "layout, make, note",
    [
        ("transposed MAT-v4", lambda val: (val.T, {"format": "4"}), "transposed (7500 samples x 12 signals)"),
        ("MAT-v5", lambda val: (val, {}), "a MAT-v5 file"),
        ("MAT-v4 float64", lambda val: (val.astype(float), {"format": "4"}), "another sample type"),
    ],
)
def test_mat_file_in_another_layout_is_read_right_with_a_note(challenge, tmp_path, layout, make, note):
    original = read_wfdb(challenge)
    val = scipy.io.loadmat(challenge.with_suffix(".mat"))["val"]
    assert val.shape == (12, 7500)
    data, options = make(val)
    record = read_wfdb(_rewrite(challenge, tmp_path, "X0001", data, **options))
    # Was: raw bytes read at the header's offset, i.e. garbage of up to 30 mV, counted "embedded".
    np.testing.assert_allclose(record.signal, original.signal, atol=1e-6)
    assert np.abs(record.signal).max() < 5
    assert note in record.metadata["signal_repaired"]
    assert "signal_repaired" not in original.metadata  # the real layout goes through wfdb untouched


def test_mat_file_that_does_not_match_its_header_is_refused(challenge, tmp_path):
    val = scipy.io.loadmat(challenge.with_suffix(".mat"))["val"]
    stem = _rewrite(challenge, tmp_path, "X0002", val[:11].T, format="4")
    with pytest.raises(RecordError, match=r"X0002.mat: the matrix is 7500 x 11, but .*X0002.hea announces "
                                          r"12 signals x 7500 samples.*savemat"):  # fmt: skip
        read_wfdb(stem)


def test_embed_reports_a_mismatched_mat_and_embeds_a_transposed_one(challenge, tmp_path, capsys):
    val = scipy.io.loadmat(challenge.with_suffix(".mat"))["val"]
    folder = tmp_path / "records"
    _rewrite(challenge, folder, "T0001", val.T, format="4")
    _rewrite(challenge, folder, "B0001", val[:, :7000], format="4")
    status = main(["embed", str(folder), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"])
    captured = capsys.readouterr()
    assert status == EXIT_PARTIAL  # one record failed, the other was embedded
    assert "Skipped record B0001" in captured.err and "announces 12 signals x 7500 samples" in captured.err
    assert "1 of 2 records embedded, 1 failed" in captured.out


# --- PTB-XL: the rate, and zero records ---------------------------------------------------------------


@pytest.fixture
def ptbxl_500_only(shared_data, tmp_path):
    """A PTB-XL root with records500/ only and no table (as after a partial download)."""
    root = tmp_path / "ptbxl"
    root.mkdir()
    (root / "records500").symlink_to(shared_data / "ptbxl_sample" / "records500", target_is_directory=True)
    return root


def test_ptbxl_root_with_only_records500_names_the_rate(ptbxl_500_only, tmp_path, capsys):
    # Was: "No PTB-XL record ... matches folds=None" from read_ptbxl, and an empty store, exit 0, from embed.
    with pytest.raises(ValueError, match=r"has no records100/ \(PTB-XL's 100 Hz copy\); it holds "
                                         r"records500/ \(500 Hz\): read that copy with sampling_rate=500"):  # fmt: skip
        read_ptbxl(ptbxl_500_only)
    assert len(read_ptbxl(ptbxl_500_only, sampling_rate=500)) == 30

    out = tmp_path / "s.npz"
    assert main(["embed", str(ptbxl_500_only), "--out", str(out), "--model", "random", "--quiet"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--ptbxl-rate 500" in err and err.count("\n") == 1 and not out.exists()

    args = ["embed", str(ptbxl_500_only), "--out", str(out), "--model", "random", "--ptbxl-rate", "500",
            "--limit", "2", "--quiet"]  # fmt: skip
    assert main(args) == EXIT_OK
    assert "2 of 30 records embedded" in capsys.readouterr().out


def test_zero_records_is_an_error_not_an_empty_store(tmp_path, ludb, capsys):
    root = tmp_path / "ptbxl"
    (root / "records100").mkdir(parents=True)  # the layout, without a csv and without records
    (tmp_path / "empty").mkdir()
    empty_npz = tmp_path / "none.npz"
    np.savez(empty_npz, x=ludb["x"][:0], fs=ludb["fs"], lead_names=ludb["lead_names"])
    for source, message in [(root, "no PTB-XL record in records100/"), (tmp_path / "empty", "no WFDB record"),
                            (empty_npz, "x holds no record")]:  # fmt: skip
        out = tmp_path / "s.npz"
        assert main(["embed", str(source), "--out", str(out), "--model", "random", "--quiet"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and not out.exists()
        with pytest.raises(ValueError, match=message):
            list_records(source)


# --- a truncated header is blamed on the header ---------------------------------------------------------


def test_truncated_header_names_the_header(shared_data, tmp_path, capsys):
    source = shared_data / "ptbxl_sample" / "records100" / "00000" / "00841_lr"
    folder = tmp_path / "wfdb"
    folder.mkdir()
    shutil.copy(source.with_suffix(".dat"), folder / "00841_lr.dat")
    lines = source.with_suffix(".hea").read_text().splitlines()
    (folder / "00841_lr.hea").write_text("\n".join(lines[:5]) + "\n")  # a copy cut after 4 signal lines
    # Was: "cannot read the record (IndexError ...). The signal file may be truncated".
    with pytest.raises(RecordError, match=r"00841_lr.hea: the header announces 12 signals but describes 4; "
                                          r"it looks truncated") as caught:  # fmt: skip
        read_wfdb(folder / "00841_lr")
    assert "signal file" not in str(caught.value)
    (folder / "00841_lr.hea").write_text("\n".join(lines[:13])[:-4] + "\n")  # cut inside the last line
    with pytest.raises(RecordError, match=r"00841_lr.hea: line 13 .* is incomplete"):
        read_wfdb(folder / "00841_lr")

    status = main(["embed", str(folder), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE and "00841_lr.hea" in err and "Traceback" not in err


def test_truncated_signal_file_is_still_blamed_on_the_signal_file(shared_data, tmp_path):
    source = shared_data / "ptbxl_sample" / "records100" / "00000" / "00841_lr"
    shutil.copy(source.with_suffix(".hea"), tmp_path / "00841_lr.hea")
    (tmp_path / "00841_lr.dat").write_bytes(source.with_suffix(".dat").read_bytes()[:5000])
    with pytest.raises(RecordError, match=r"cannot read the signal file 00841_lr.dat.*truncated"):
        read_wfdb(tmp_path / "00841_lr")


# --- one recording passed to ECGPreprocessor -------------------------------------------------------------


def test_one_time_major_recording_is_refused_with_the_x_none_hint(shared_data):
    record = read_wfdb(shared_data / "ptbxl_sample" / "records500" / "00000" / "00841_hr")
    assert record.signal.shape == (5000, 12)
    for pad in ("error", "zeros"):
        prep = ECGPreprocessor(sampling_rate=record.fs, lead_names=record.lead_names, pad=pad,
                               model="ecgsoup-100hz-tiny")  # fmt: skip
        # Was: 5,000 one-sample "records" (pad='zeros' returned 5,000 rows).
        with pytest.raises(ValueError, match=r"shape \(5000, 12\): one recording of 5000 samples x 12 leads.*X\[None\]"):
            prep.fit_transform(record.signal)
    out = prep.fit_transform(record.signal[None])
    assert out.shape == (1, 12 * 1000)
    with pytest.raises(ValueError, match=r"X\[None\]"):
        prep.transform(record.signal)


def test_one_single_lead_recording_is_refused_but_flat_input_is_not(shared_data):
    record = read_wfdb(shared_data / "wfdb_samples" / "mitdb" / "100", leads=["II"])
    one_lead = record.signal[:3600]  # 10 s of MLII at 360 Hz, shape (3600, 1)
    prep = ECGPreprocessor(sampling_rate=record.fs, lead_names=("II",), model=_one_lead_config(), pad="zeros")
    with pytest.raises(ValueError, match=r"shape \(3600, 1\).*X\[None\]"):
        prep.fit(one_lead)
    assert prep.fit_transform(one_lead[None]).shape == (1, 500)
    # Flat (n_records, n_samples * n_leads) input is untouched: here 2 records of 1,800 samples.
    assert prep.fit_transform(one_lead.reshape(2, 1800)).shape == (2, 500)


def _one_lead_config():
    from ecgsoup.backbones.stmem import EncoderConfig

    return EncoderConfig(name="one-lead", sampling_rate=50.0, n_samples=500, patch_size=50, lead_names=("II",),
                         width=8, depth=1, heads=1, mlp_dim=8)  # fmt: skip


# --- .npz inputs are read a record at a time ------------------------------------------------------


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npz_input_is_read_record_by_record_with_the_same_numbers(tmp_path, ludb, save, order):
    """x is memory-mapped (np.savez) or decompressed one record at a time (savez_compressed)."""
    from ecgsoup.io import open_npz

    x = np.asarray(ludb["x"][:5], order=order)
    path = tmp_path / "in.npz"
    save(path, x=x, fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=ludb["record_id"][:5])
    rows = open_npz(path)["x"]
    # Never loaded whole, except Fortran order in a compressed member (no record-wise access).
    assert isinstance(rows, np.ndarray) == (order == "F")
    records = list_records(path)
    for position in [0, 3, 1, 4]:  # out of order: a compressed stream restarts
        record = records.source.read(position)
        np.testing.assert_array_equal(record.signal, ludb["x"][position].astype(np.float32))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_npz_reader_lists_members_and_reads_every_record_at_once(tmp_path, ludb, save):
    from ecgsoup.io import NpzRows, ids_list, npz_members, open_npz, read_npz

    path = tmp_path / "in.npz"
    x = np.asarray(ludb["x"][:4])
    save(path, x=x, fs=ludb["fs"], record_id=ludb["record_id"][:4])
    members = npz_members(path)
    assert members["x"] == (x.shape, x.dtype) and set(members) == {"x", "fs", "record_id"}
    arrays = open_npz(path)
    assert isinstance(arrays["x"], NpzRows) and len(arrays["x"]) == 4
    np.testing.assert_array_equal(np.asarray(arrays["x"]), x)
    assert ids_list(arrays["record_id"]) == [int(i) for i in ludb["record_id"][:4]]
    with pytest.raises(ValueError, match="cannot read the .npz"):
        npz_members(tmp_path / "missing.npz")
    assert set(read_npz(path, names=("fs",))) == {"fs"}
    np.testing.assert_array_equal(read_npz(path)["x"], x)
    np.save(tmp_path / "plain.npy", x)
    with pytest.raises(ValueError, match="not an .npz"):
        read_npz(tmp_path / "plain.npy")


def test_npz_input_with_object_arrays_is_refused(tmp_path, ludb):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([ludb["x"][0], None], dtype=object), fs=ludb["fs"], lead_names=ludb["lead_names"])
    with pytest.raises(ValueError, match="holds Python objects; store the signals as a numeric array"):
        list_records(path)


def test_npz_whose_x_header_does_not_match_its_bytes_is_refused(tmp_path, ludb):
    import zipfile

    good = tmp_path / "good.npz"
    np.savez(good, x=ludb["x"][:3], fs=ludb["fs"], lead_names=ludb["lead_names"])
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:-100] if info.filename == "x.npy" else data)  # cut short
    with pytest.raises(ValueError, match="x.npy holds .* bytes but its header describes"):
        list_records(bad)
