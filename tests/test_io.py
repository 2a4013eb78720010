"""Readers on real records: WFDB formats, Challenge, PTB-XL, arrays, bundled sample."""

import fnmatch
import shutil
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb

from ecgsoup import load_sample
from ecgsoup.io import (
    ECGDataset,
    ECGRecord,
    RecordError,
    from_array,
    read_challenge,
    read_dataset,
    read_ptbxl,
    read_records,
    read_wfdb,
)
from ecgsoup.leads import STANDARD_LEAD_ORDER
from ecgsoup.signal import resample

REPO = Path(__file__).resolve().parents[1]


def _copy_record(source: Path, target_dir: Path, suffixes=(".hea", ".dat")) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)
    for suffix in suffixes:
        shutil.copyfile(source.with_suffix(suffix), target_dir / (source.name + suffix))
    return target_dir / source.name


# --- WFDB formats -----------------------------------------------------------------


def test_ludb_wfdb_matches_microvolt_npz(shared_data, ludb):
    record = read_wfdb(shared_data / "wfdb_samples" / "ludb" / "1.hea")
    assert isinstance(record, ECGRecord)
    assert record.signal.dtype == np.float32 and record.signal.shape == (5000, 12)
    assert record.fs == 500 and record.units == "mV"
    assert record.lead_names == STANDARD_LEAD_ORDER  # file spells them "i", "avr", "v1"
    assert record.metadata["sex"] == "F" and record.metadata["age"] == "51"
    expected_mv = ludb["x"][0].astype(np.float64) / 1000.0  # npz is int16 microvolts
    assert np.abs(record.signal - expected_mv).max() < 1e-3


@pytest.mark.parametrize("unit, factor", [("uV", 1e-3), ("V", 1e3)])
def test_units_are_converted_to_millivolts(shared_data, tmp_path, unit, factor):
    original = shared_data / "wfdb_samples" / "ludb" / "1"
    stem = _copy_record(original, tmp_path)
    # Same ADC data, header rewritten in another unit: gain per `unit` = gain per mV * factor.
    lines = []
    for line in stem.with_suffix(".hea").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2].endswith("/mV"):
            gain, baseline = parts[2][: -len("/mV")].rstrip(")").split("(")
            parts[2] = f"{float(gain) * factor:.10g}({baseline})/{unit}"
            line = " ".join(parts)
        lines.append(line)
    stem.with_suffix(".hea").write_text("\n".join(lines) + "\n")
    assert wfdb.rdheader(str(stem)).units[0] == unit
    converted = read_wfdb(stem)
    reference = read_wfdb(original)
    assert converted.units == "mV"
    np.testing.assert_allclose(converted.signal, reference.signal, atol=1e-5)


def test_mitbih_format_212(shared_data):
    record = read_wfdb(shared_data / "wfdb_samples" / "mitdb" / "100")
    assert record.signal.shape == (650000, 2) and record.fs == 360
    assert record.lead_names == ("II", "V5")  # MLII is modified lead II
    # Header: ADC zero 1024, gain 200/mV, first samples 995 and 1011.
    np.testing.assert_allclose(record.signal[0], [(995 - 1024) / 200, (1011 - 1024) / 200], atol=1e-6)


def test_ptbdb_fifteen_leads_in_two_signal_files(shared_data):
    record = read_wfdb(shared_data / "wfdb_samples" / "ptbdb" / "s0010_re")
    assert record.signal.shape == (38400, 15) and record.fs == 1000
    assert record.lead_names[:12] == STANDARD_LEAD_ORDER
    assert record.lead_names[12:] == ("vx", "vy", "vz")  # Frank leads from the .xyz file
    np.testing.assert_allclose(record.signal[0, [0, 14]], [-489 / 2000, -18 / 2000], atol=1e-6)
    assert record.metadata["reason_for_admission"] == "Myocardial infarction"
    twelve = read_wfdb(shared_data / "wfdb_samples" / "ptbdb" / "s0010_re", leads=STANDARD_LEAD_ORDER)
    assert twelve.signal.shape == (38400, 12)


def test_challenge2015_mat_skips_non_voltage_channel(shared_data):
    record = read_wfdb(shared_data / "wfdb_samples" / "challenge2015" / "a103l.mat")
    assert record.lead_names == ("II", "V") and record.fs == 250
    assert record.metadata["skipped_channels"] == {"PLETH": "NU"}
    assert record.signal[0, 0] == pytest.approx(-171 / 7247, abs=1e-6)


def test_missing_lead_is_a_record_error(shared_data):
    with pytest.raises(RecordError, match=r"needs leads \['V1'\]"):
        read_wfdb(shared_data / "wfdb_samples" / "mitdb" / "100", leads=["II", "V1"])


# --- corrupt records ----------------------------------------------------------------


def test_truncated_record_raises_and_is_skipped_with_report(shared_data, tmp_path):
    good = _copy_record(shared_data / "wfdb_samples" / "ludb" / "1", tmp_path / "good")
    bad = _copy_record(shared_data / "wfdb_samples" / "ludb" / "1", tmp_path / "bad")
    data = bad.with_suffix(".dat").read_bytes()
    bad.with_suffix(".dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match=r"bad[/\\]1.*truncated"):
        read_wfdb(bad)
    with pytest.warns(UserWarning, match=r"Skipped 1 record"):
        dataset = read_dataset(tmp_path, on_error="skip")
    assert len(dataset) == 1 and dataset.metadata["path"][0] == str(good)
    assert len(dataset.errors) == 1 and "bad" in dataset.errors[0][0]
    with pytest.raises(RecordError, match="truncated"):
        read_dataset(tmp_path, on_error="raise")
    with pytest.warns(UserWarning, match="Skipped record"):
        assert len(list(read_records(tmp_path))) == 1


def test_missing_header_and_bad_on_error(tmp_path):
    with pytest.raises(RecordError, match="no such WFDB header"):
        read_wfdb(tmp_path / "nothing.hea")
    with pytest.raises(ValueError, match="on_error"):
        read_dataset(tmp_path, on_error="ignore")


# --- folders, rates, leads -------------------------------------------------------------


def test_read_dataset_reconciles_rates_and_leads_only_when_asked(shared_data):
    folder = shared_data / "wfdb_samples"
    with pytest.raises(ValueError, match="different sampling rates.*sampling_rate="):
        read_dataset(folder)
    with pytest.raises(ValueError, match="different leads.*leads="):
        read_dataset(folder, sampling_rate=100)
    with pytest.raises(ValueError, match="different lengths.*length="):
        read_dataset(folder, sampling_rate=100, leads=["II"])
    dataset = read_dataset(folder, sampling_rate=100, leads=["II"], length=1000)
    assert dataset.X.shape == (4, 1000, 1) and dataset.lead_names == ("II",)
    assert set(dataset.metadata["fs"]) == {250.0, 360.0, 500.0, 1000.0}  # the native rates
    ragged = read_dataset(folder, sampling_rate=100, leads=["II"], length="ragged")
    assert isinstance(ragged.X, list) and "ragged" in repr(ragged)


def test_read_records_single_record_and_folder(shared_data):
    records = list(read_records(shared_data / "wfdb_samples" / "ludb"))
    assert [r.record_id for r in records] == ["1"]
    single = list(read_records(shared_data / "wfdb_samples" / "mitdb" / "100.dat"))
    assert single[0].fs == 360


# --- Challenge 2020/2021 -------------------------------------------------------------------


def test_challenge_header_quirk_is_repaired(shared_data):
    folder = shared_data / "cinc2020_2021_sample" / "records_header_quirk"
    with pytest.raises(wfdb.io.header.HeaderSyntaxError):
        wfdb.rdrecord(str(folder / "E00001"))
    dataset = read_challenge(folder)
    assert dataset.X.shape == (13, 5000, 12) and dataset.sampling_rate == 500
    assert dataset.metadata["header_repaired"].str.contains("E00001.mat").iloc[0]
    val = scipy.io.loadmat(folder / "E00001.mat")["val"]  # (12, 5000) ADC units, gain 4880/mV
    np.testing.assert_allclose(dataset.X[0], val.T / 4880.0, atol=1e-6)


def test_challenge_sample_with_dx_codes(shared_data):
    folder = shared_data / "cinc2020_2021_sample"
    dataset = read_challenge(folder, sampling_rate=500, length=5000)
    assert dataset.X.shape == (123, 5000, 12) and not dataset.errors
    labels = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False).set_index("record")
    dx = dict(zip(dataset.record_ids, dataset.metadata["dx"]))
    expected = {r: tuple(c for c in s.split(",") if c) for r, s in labels["dx_snomed"].items()}
    assert dx == expected
    assert sum(bool(codes) for codes in dx.values()) == 78


# --- PTB-XL -----------------------------------------------------------------------------------


def test_ptbxl_sample_layout_folds_and_labels(shared_data):
    root = shared_data / "ptbxl_sample"
    labels = pd.read_csv(root / "labels.csv")
    dataset = read_ptbxl(root)
    assert dataset.X.shape == (30, 1000, 12) and dataset.sampling_rate == 100
    assert dataset.record_ids == labels["ecg_id"].tolist()
    arrays = np.load(root / "ptbxl_sample_100hz.npz")
    assert np.array_equal(arrays["ecg_id"], dataset.record_ids)
    assert np.abs(dataset.X - arrays["x"] / 1000.0).max() < 1e-3
    test = read_ptbxl(root, sampling_rate=500, folds=[9, 10])
    wanted = labels[labels["strat_fold"].isin([9, 10])]
    assert test.X.shape == (len(wanted), 5000, 12)
    assert test.record_ids == wanted["ecg_id"].tolist()
    assert test.metadata["challenge2024_labels"].tolist() == wanted["challenge2024_labels"].tolist()
    assert read_dataset(root, sampling_rate=500).X.shape == (30, 5000, 12)  # the records500 copy
    assert read_dataset(root, sampling_rate=250).X.shape == (30, 2500, 12)  # records100, resampled
    streamed = list(read_records(root))
    assert [r.record_id for r in streamed] == dataset.record_ids
    with pytest.raises(ValueError, match="folds are 1..10"):
        read_ptbxl(root, folds=11)


def test_ptbxl_database_csv_and_bare_layout(shared_data, tmp_path):
    root = shared_data / "ptbxl_sample"
    labels = pd.read_csv(root / "labels.csv").head(3)
    full = tmp_path / "full"
    full.mkdir()
    (full / "records100").symlink_to(root / "records100")
    table = labels[["ecg_id", "strat_fold", "filename_lr", "filename_hr"]].copy()
    table["scp_codes"] = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0}", "{}"]
    table.to_csv(full / "ptbxl_database.csv", index=False)
    dataset = read_ptbxl(full)
    assert dataset.record_ids == labels["ecg_id"].tolist()
    assert dataset.metadata["scp_codes"][0] == {"NORM": 100.0, "SR": 0.0}
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "records100").symlink_to(root / "records100")
    assert len(read_ptbxl(bare)) == 30
    with pytest.raises(ValueError, match="no fold information"):
        read_ptbxl(bare, folds=1)


# --- arrays and the bundled sample -----------------------------------------------------------


def test_from_array_microvolts(ludb):
    dataset = from_array(ludb["x"][:3], 500, ludb["lead_names"], units="uV", record_ids=ludb["record_id"][:3])
    assert dataset.X.dtype == np.float32 and dataset.X.shape == (3, 5000, 12)
    np.testing.assert_allclose(dataset.X, ludb["x"][:3] / 1000.0, atol=1e-6)
    assert dataset.record_ids == [1, 2, 3]
    with pytest.raises(ValueError, match="transpose"):
        from_array(ludb["x"][:3].transpose(0, 2, 1), 500, ludb["lead_names"])
    with pytest.raises(ValueError, match="units"):
        from_array(ludb["x"][:3], 500, ludb["lead_names"], units="NU")


def test_load_sample_is_ludb_at_100hz(shared_data, ludb):
    dataset = load_sample()
    assert isinstance(dataset, ECGDataset) and len(dataset) == 200
    assert dataset.X.shape == (200, 1000, 12) and dataset.X.dtype == np.float32
    assert dataset.sampling_rate == 100 and dataset.lead_names == STANDARD_LEAD_ORDER
    assert dataset.record_ids == list(range(1, 201))
    counts = dataset.metadata["rhythm_primary"].value_counts()
    assert counts["Sinus rhythm"] == 143 and counts["Atrial fibrillation"] == 15
    labels = pd.read_csv(shared_data / "ludb" / "ludb_labels.csv", keep_default_na=False)
    assert dataset.metadata["axis"].tolist() == labels["axis"].tolist()
    expected = resample(ludb["x"][:5] / 1000.0, 500, 100, axis=1)
    assert np.abs(dataset.X[:5] - expected).max() <= 0.0005 + 1e-6  # int16 µV rounding


def test_sample_files_are_declared_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["ecgsoup.data"]
    data_dir = resources.files("ecgsoup.data")
    files = [p.name for p in data_dir.iterdir() if p.is_file() and not p.name.startswith("__")]
    assert {"ludb_100hz.npz", "ludb_labels.csv", "LICENSE-LUDB.txt", "README.md"} <= set(files)
    for name in files:
        if name.endswith(".pyc"):
            continue
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
    assert (data_dir / "ludb_100hz.npz").stat().st_size <= 4 * 1024 * 1024


def test_dataset_slicing_masks_and_ids_keep_x_and_metadata_aligned():
    from ecgsoup import load_sample

    ds = load_sample()
    af = ds[ds.metadata["rhythm_primary"] == "Atrial fibrillation"]
    assert len(af) == 15 == af.X.shape[0] == len(af.metadata)
    assert (af.metadata["rhythm_primary"] == "Atrial fibrillation").all()
    i = ds.record_ids.index(af.record_ids[0])
    np.testing.assert_array_equal(af.X[0], ds.X[i])
    head = ds[:10]
    assert head.record_ids == ds.record_ids[:10] and list(head.metadata.index) == list(range(10))
    picked = ds.select([ds.record_ids[5], ds.record_ids[2]])
    np.testing.assert_array_equal(picked.X, ds.X[[5, 2]])
    assert list(picked.metadata["record_id"]) == [ds.record_ids[5], ds.record_ids[2]]
    with pytest.raises(IndexError, match="one entry per record"):
        ds[np.ones(3, bool)]
    with pytest.raises(KeyError, match="not in this dataset"):
        ds.select(["no-such-record"])


def test_the_old_hospital_module_still_imports_with_a_future_warning():
    import importlib
    import sys

    from ecgsoup.io import hospital

    sys.modules.pop("ecgsoup.hospital", None)
    with pytest.warns(FutureWarning, match="ecgsoup.io.hospital"):
        old = importlib.import_module("ecgsoup.hospital")
    assert old.read_file is hospital.read_file and old.detect_format is hospital.detect_format
