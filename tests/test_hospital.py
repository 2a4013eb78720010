"""Hospital ECG exports: real files of each format, checked against an independent reading.

The files in ``tests/data/hospital`` (sources and licences in its README) are
real exports, except the EDF/BDF pair, written by pyedflib from a real LUDB
record.  pydicom's own 12-lead ECG (``waveform_ecg.dcm``) comes with pydicom.
Each reader is compared, to the microvolt, with another library or with the
values the file states; hostile and damaged files are refused with one line.
"""

import base64
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ecgdatakit", reason='needs the hospital extra: pip install -e ".[hospital,test]"')
pydicom = pytest.importorskip("pydicom")
pyedflib = pytest.importorskip("pyedflib")

from defusedxml import ElementTree as SafeET  # noqa: E402

from ecgsoup.cli import EXIT_PARTIAL, EXIT_USAGE, main  # noqa: E402
from ecgsoup.io import RecordError, hospital, list_records, read_dataset, read_records  # noqa: E402
from ecgsoup.signal import derive_limb_leads  # noqa: E402
from ecgsoup.store import open_store  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "hospital"
MUSE = DATA / "ge_muse_guangxi_sinus.xml"
MUSE_DICOM = DATA / "dicom_guangxi_sinus.dcm"  # ecg2dcm's conversion of MUSE
AECG = DATA / "hl7_aecg_mindray_r12.xml"
PHILIPS = DATA / "philips_sierra_129DYPRG.xml"
SCP = DATA / "scp_ecg_toolkit_example.scp"
EDF = DATA / "ludb1_generated.edf"
BDF = DATA / "ludb1_generated.bdf"
PLUX_EDF = DATA / "biosignalsplux_supine_1min.edf"  # a real single-lead recording (EDF+)
UV = 1e-3  # one microvolt, in mV
# What the files hold about their patients; none of it may leave the reader.
IDENTIFYING = ["Clark", "SBJ-123", "1953", "Doe^Jane", "MRN-0042", "1961", "25060897140", "1112010721168bdc",
               "00000000", "Anonymous", "642341"]  # fmt: skip


@pytest.fixture(scope="module")
def pydicom_ecg() -> Path:
    return Path(pydicom.data.get_testdata_file("waveform_ecg.dcm"))


@pytest.fixture
def folder(tmp_path, pydicom_ecg):
    """One real file of each format, under names that hide the format."""
    out = tmp_path / "exports"
    out.mkdir()
    for i, source in enumerate([MUSE, MUSE_DICOM, AECG, PHILIPS, SCP, EDF, BDF, pydicom_ecg]):
        shutil.copy(source, out / f"export{i}.dat" if i % 2 else out / source.name)
    return out


def _dicom_mv(path):
    """pydicom's own reading of a DICOM ECG: (samples in mV, lead names)."""
    ds = pydicom.dcmread(path)
    group = ds.WaveformSequence[0]
    x = ds.waveform_array(0).astype(np.float64)
    units = [ch.ChannelSensitivityUnitsSequence[0].CodeValue for ch in group.ChannelDefinitionSequence]
    factor = np.array([{"uV": 1e-3, "mV": 1.0}[u] for u in units])
    names = [ch.ChannelSourceSequence[0].CodeMeaning for ch in group.ChannelDefinitionSequence]
    return x * factor, names


# --- recognising files from their content --------------------------------------------------


@pytest.mark.parametrize("path, fmt", [(MUSE, "ge_muse"), (MUSE_DICOM, "dicom"), (AECG, "hl7_aecg"),
                                       (PHILIPS, "philips_sierra"), (SCP, "scp_ecg"), (EDF, "edf"), (BDF, "bdf")])  # fmt: skip
def test_formats_are_recognised_from_content_not_extension(tmp_path, path, fmt):
    renamed = tmp_path / "renamed.bin"
    shutil.copy(path, renamed)
    assert hospital.detect_format(path) == hospital.detect_format(renamed) == fmt


def test_other_files_are_not_taken_for_ecgs(tmp_path):
    (tmp_path / "config.xml").write_text("<?xml version='1.0'?><settings><a>1</a></settings>")
    (tmp_path / "notes.bin").write_bytes(b"0123456789" * 100)
    assert hospital.detect_format(tmp_path / "config.xml") is None
    assert hospital.detect_format(tmp_path / "notes.bin") is None


# --- each reader against an independent reading, to the microvolt ---------------------------


def test_dicom_matches_pydicom(pydicom_ecg):
    record = hospital.read_file(pydicom_ecg)
    expected, names = _dicom_mv(pydicom_ecg)
    assert record.fs == 1000 and record.metadata["format"] == "dicom"
    assert list(record.lead_names) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert [n.replace("Lead ", "").split(" ")[0] for n in names][:3] == ["I", "II", "III"]
    assert np.abs(record.signal - expected[:, :12]).max() < UV


def test_muse_matches_its_stated_values_and_its_dicom_conversion():
    record = hospital.read_file(MUSE)
    assert record.lead_names == ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")  # GE stores 8 leads
    assert record.fs == 500 and record.signal.shape == (5000, 8)
    # The file's own statement: base64 little-endian int16 times LeadAmplitudeUnitsPerBit microvolts.
    rhythm = [w for w in SafeET.parse(MUSE).getroot().iter("Waveform") if w.findtext("WaveformType") == "Rhythm"][0]
    for k, lead in enumerate(rhythm.iter("LeadData")):
        assert lead.findtext("LeadAmplitudeUnits") == "MICROVOLTS"
        counts = np.frombuffer(base64.b64decode(lead.findtext("WaveFormData")), "<i2")
        stated = counts * float(lead.findtext("LeadAmplitudeUnitsPerBit")) * 1e-3
        assert lead.findtext("LeadID") == record.lead_names[k]
        assert np.abs(record.signal[:, k] - stated).max() < UV
    # ecg2dcm's DICOM of the same export, read by pydicom, holds the same eight leads.
    dicom, _ = _dicom_mv(MUSE_DICOM)
    order = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6 in the DICOM's 12-lead order
    assert np.abs(record.signal - dicom[:, order]).max() < 5 * UV  # the DICOM stores whole 4.88 uV steps


def test_hl7_aecg_matches_its_digits():
    record = hospital.read_file(AECG)
    assert record.fs == 100 and record.signal.shape == (1000, 12)
    root = SafeET.parse(AECG).getroot()
    ns = {"h": "urn:hl7-org:v3"}
    rhythm = root.find(".//h:series/h:component/h:sequenceSet", ns)  # the rhythm strip, not the median beats
    for component in rhythm.iterfind("h:component/h:sequence", ns):
        code = component.find("h:code", ns).get("code")
        if not code.startswith("MDC_ECG_LEAD_"):
            continue
        value = component.find("h:value", ns)
        scale, origin = value.find("h:scale", ns), value.find("h:origin", ns)
        assert scale.get("unit") == origin.get("unit") == "uV"
        digits = np.array(value.findtext("h:digits", namespaces=ns).split(), dtype=float)
        stated = (digits * float(scale.get("value")) + float(origin.get("value"))) * 1e-3
        lead = code.removeprefix("MDC_ECG_LEAD_").replace("AV", "aV")
        assert np.abs(record.signal[:, record.lead_names.index(lead)] - stated).max() < UV


def test_philips_matches_sierraecg():
    sierraecg = pytest.importorskip("sierraecg")
    record = hospital.read_file(PHILIPS)
    other = sierraecg.read_file(str(PHILIPS))
    resolution_uv = float(next(e.text for e in SafeET.parse(PHILIPS).getroot().iter() if e.tag.endswith("signalresolution")))  # the file says 5 uV
    assert [lead.label for lead in other.leads] == list(record.lead_names)
    for k, lead in enumerate(other.leads):
        assert np.abs(record.signal[:, k] - lead.samples * resolution_uv * 1e-3).max() < UV


def test_scp_ecg_limb_leads_obey_einthoven():
    record = hospital.read_file(SCP)
    assert record.fs == 500 and record.signal.shape == (5000, 12)
    x = {name: record.signal[:, k].astype(np.float64) for k, name in enumerate(record.lead_names)}
    # The stored III is measured, not computed: it equals II - I within the file's quantisation.
    assert np.median(np.abs(x["III"] - (x["II"] - x["I"]))) < 0.03
    assert 0.2 < np.ptp(x["II"]) < 10  # a physiological amplitude in mV


@pytest.mark.parametrize("path", [EDF, BDF])
def test_edf_and_bdf_match_the_original_record_and_another_reader(path, shared_data):
    record = hospital.read_file(path)
    ludb = np.load(shared_data / "ludb" / "ludb_12lead_500hz.npz")
    original = ludb["x"][0].astype(np.float64) / 1000  # int16 microvolts
    assert record.lead_names == tuple(str(n) for n in ludb["lead_names"])  # "ECG I" -> "I"
    assert np.abs(record.signal - original).max() < UV
    if path.suffix == ".edf":  # ECGDataKit reads EDF (not BDF): an independent reader
        from ecgdatakit import FileParser

        other = FileParser.parse(path)
        assert np.abs(record.signal[:, 1] - other.leads[1].samples).max() < UV


def _edf_by_hand(path):
    """The EDF's samples decoded from its own header (int16 digital values, gain and offset): (n, signals) in mV."""
    raw = path.read_bytes()
    n_header, n_records, n_signals = int(raw[184:192]), int(raw[236:244]), int(raw[252:256])
    field = lambda offset, width: [raw[256 + offset * n_signals + i * width: 256 + offset * n_signals + (i + 1) * width]
                                   for i in range(n_signals)]  # fmt: skip
    # Offsets of each per-signal header field (in units of n_signals bytes): label 0, ... per the EDF spec.
    labels = [f.decode().strip() for f in field(0, 16)]
    pmin, pmax = (np.array([float(f) for f in field(o, 8)]) for o in (104, 112))
    dmin, dmax = (np.array([float(f) for f in field(o, 8)]) for o in (120, 128))
    per_record = np.array([int(f) for f in field(216, 8)])
    data = np.frombuffer(raw[n_header:], "<i2").reshape(n_records, per_record.sum())
    starts = np.concatenate([[0], np.cumsum(per_record)])
    i = labels.index("ECG")
    digital = data[:, starts[i]:starts[i + 1]].reshape(-1).astype(np.float64)
    return pmin[i] + (digital - dmin[i]) * (pmax[i] - pmin[i]) / (dmax[i] - dmin[i])


def test_a_real_single_lead_edf_matches_its_header_and_another_reader(tmp_path, capsys):
    record = hospital.read_file(PLUX_EDF)
    assert record.lead_names == ("ECG",) and record.fs == 1000.0 and record.signal.shape == (60000, 1)
    assert np.abs(record.signal[:, 0] - _edf_by_hand(PLUX_EDF)).max() < UV
    from ecgdatakit import FileParser

    other = FileParser.parse(PLUX_EDF)
    assert np.abs(record.signal[:, 0] - other.leads[0].samples).max() < UV
    # One unnamed lead: it reaches a single-lead model only when the user says which lead it is.
    folder = tmp_path / "strap"
    folder.mkdir()
    shutil.copy(PLUX_EDF, folder / PLUX_EDF.name)
    args = ["embed", str(folder), "--out", str(tmp_path / "s.npz"), "--model", "random:ecgfounder-1lead", "--quiet"]
    assert main(args) == EXIT_PARTIAL
    assert "--lead-map" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--lead-map", "I=ECG"]) == 0
    assert "1 of 1 records (edf 1) embedded" in capsys.readouterr().out


# --- derived leads ------------------------------------------------------------------------


def test_derive_limb_leads_follows_einthoven_and_goldberger():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 50, 3)).astype(np.float32)
    out, names, derived = derive_limb_leads(x, ["I", "II", "V1"])
    assert names == ("I", "II", "V1", "III", "aVR", "aVL", "aVF") and derived == ("III", "aVR", "aVL", "aVF")
    i, ii = x[..., 0], x[..., 1]
    np.testing.assert_allclose(out[..., 3:], np.stack([ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], -1), atol=1e-6)
    same, _, none = derive_limb_leads(out, names)
    assert same is out and none == ()
    with pytest.raises(ValueError, match="need leads I and II"):
        derive_limb_leads(x[..., 1:], ["II", "V1"])


def test_an_8_lead_export_gets_its_limb_leads_only_when_asked():
    plain = next(read_records(MUSE))
    assert plain.lead_names == ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    assert "derived_leads" not in plain.metadata
    record = next(read_records(MUSE, derive_leads=True))
    assert record.metadata["derived_leads"] == ("III", "aVR", "aVL", "aVF")
    assert record.lead_names == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    np.testing.assert_array_equal(record.signal[:, [0, 1, 6, 7, 8, 9, 10, 11]], plain.signal)
    # ecg2dcm computed the same four leads for its DICOM of this export.
    dicom, _ = _dicom_mv(MUSE_DICOM)
    assert np.abs(record.signal[:, 2:6] - dicom[:, 2:6]).max() < 10 * UV


def test_the_missing_lead_error_names_derive_leads():
    from ecgsoup.preprocessing import ECGPreprocessor

    record = hospital.read_file(MUSE)
    with pytest.raises(ValueError, match=r"derive_leads=True .*`--derive-leads`.*never fills a missing lead"):
        ECGPreprocessor(sampling_rate=record.fs, lead_names=record.lead_names).fit_transform(record.signal[None])


# --- privacy ----------------------------------------------------------------------------


def test_no_identifying_field_reaches_the_dataset(tmp_path):
    for name in (SCP, EDF, AECG):
        shutil.copy(name, tmp_path / name.name)
    ds = read_dataset(tmp_path, length=1000, sampling_rate=100, acquisition_date=False)
    assert {"scp_ecg", "edf", "hl7_aecg"} == set(ds.metadata["format"])
    text = ds.metadata.drop(columns=["path"]).to_csv() + repr(ds.record_ids)
    assert not [word for word in IDENTIFYING if word in text]
    assert all(len(rid) == 16 for rid in ds.record_ids)  # content hashes by default
    assert "birth_date" not in ds.metadata and "acquisition_date" not in ds.metadata
    by_name = read_dataset(tmp_path, length=1000, sampling_rate=100, id_from="name", acquisition_date=True)
    assert sorted(by_name.record_ids) == sorted(p.stem for p in (SCP, EDF, AECG))
    assert "acquisition_date" in by_name.metadata


def test_embed_a_folder_of_every_format(folder, tmp_path, capsys):
    """One command embeds one real file of each format; nothing identifying reaches the store or the terminal."""
    (folder / "bomb.xml").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><RestingECG><x>&b;</x></RestingECG>'
    )
    out = tmp_path / "store.npz"
    code = main(["embed", str(folder), "--out", str(out), "--model", "random", "--derive-leads", "--quiet"])
    captured = capsys.readouterr()
    assert code == EXIT_PARTIAL, captured.err
    assert "8 of 9 records (dicom 2, ge_muse 2, bdf 1, edf 1, hl7_aecg 1, philips_sierra 1, scp_ecg 1) embedded" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert "bomb.xml: the XML declares entities" in line and "never expanded" in line
    stored = open_store(out)
    assert len(stored.record_ids) == 8
    assert stored.attrs["derived_leads"].startswith("III = II - I")
    assert stored.attrs["source_formats"]["dicom"] == 2
    # Only the 8-lead MUSE export lacked the limb leads; the store says so for that record alone.
    (muse_id, leads), = stored.attrs["records_with_derived_leads"].items()
    assert leads == ["III", "aVR", "aVL", "aVF"]
    assert f"Derived leads: 1 record(s) had III, aVR, aVL, aVF computed from I and II ({muse_id})" in captured.out
    text = captured.out + captured.err + repr(stored.attrs) + repr(stored.record_ids) + repr(stored.errors)
    raw = out.read_bytes()  # numpy keeps strings as UTF-32, JSON attributes as UTF-8
    assert not [w for w in IDENTIFYING if w in text or w.encode() in raw or w.encode("utf-32-le") in raw]


def test_derived_leads_are_recorded_per_record_in_a_zarr_store(tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    for source in (MUSE, MUSE_DICOM):
        shutil.copy(source, folder / source.name)
    out = tmp_path / "store.zarr"
    args = ["embed", str(folder), "--out", str(out), "--model", "random", "--quiet", "--id-from", "name"]
    assert main([*args, "--derive-leads"]) == 0
    stored = open_store(out)
    assert stored.attrs["records_with_derived_leads"] == {MUSE.stem: ["III", "aVR", "aVL", "aVF"]}
    assert MUSE_DICOM.stem in stored.record_ids
    capsys.readouterr()
    # Without the option the 8-lead export fails with the fix named, and the 12-lead one is embedded.
    assert main([*args, "--overwrite"]) == EXIT_PARTIAL
    captured = capsys.readouterr()
    assert "--derive-leads" in captured.err and "1 of 2 records" in captured.out
    assert open_store(out).attrs["records_with_derived_leads"] == {}


# --- bad and hostile files ---------------------------------------------------------------


def _muse_with(tmp_path, transform, name="bad.xml"):
    path = tmp_path / name
    path.write_bytes(transform(MUSE.read_bytes()))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: _muse_with(p, lambda b: b[:5000]), "malformed XML"),
    (lambda p: _muse_with(p, lambda b: b.replace(b"<RestingECG>", b'<!DOCTYPE RestingECG [<!ENTITY x SYSTEM '
                                                 b'"file:///etc/passwd">]><RestingECG><e>&x;</e>', 1)
                          .replace(b'<!DOCTYPE RestingECG SYSTEM "restecg.dtd">', b"")),
     "declares entities or external references"),
    (lambda p: _muse_with(p, lambda b: b.replace(b"<WaveFormData>", b"<WaveFormData>AAAA", 1)), "cannot read this GE MUSE"),
    (lambda p: _muse_with(p, lambda b: b[: b.rfind(b"<WaveFormData>") + 14] + b"AAAA" + b[b.rfind(b"</WaveFormData>"):]),
     "cannot read this GE MUSE"),
], ids=["malformed", "external-entity", "base64-garbage", "base64-short"])  # fmt: skip
def test_damaged_xml_is_refused_with_one_line(tmp_path, make, message):
    with pytest.raises(RecordError, match=message) as info:
        hospital.read_file(make(tmp_path))
    assert "\n" not in str(info.value) and "bad.xml" in str(info.value)


def test_a_dicom_without_waveform_is_refused(tmp_path):
    ds = pydicom.dcmread(MUSE_DICOM)
    del ds.WaveformSequence
    ds.save_as(tmp_path / "nowave.dcm")
    with pytest.raises(RecordError, match=r"nowave.dcm: cannot read this DICOM .*no usable Waveform Sequence"):
        hospital.read_file(tmp_path / "nowave.dcm")


def test_an_edf_with_a_lying_header_is_refused_before_reading(tmp_path):
    lying = bytearray(EDF.read_bytes())
    lying[236:244] = b"999999  "  # data records: the file holds 10
    (tmp_path / "lying.edf").write_bytes(lying)
    with pytest.raises(RecordError, match=r"announces 999999 data records .* the header lies or the file is truncated"):
        hospital.read_file(tmp_path / "lying.edf")
    (tmp_path / "cut.bdf").write_bytes(BDF.read_bytes()[:50_000])
    with pytest.raises(RecordError, match="the file has 50000 bytes"):
        hospital.read_file(tmp_path / "cut.bdf")


def test_an_absurdly_large_file_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(hospital, "MAX_FILE_BYTES", 1000)
    with pytest.raises(RecordError, match="refused unread"):
        hospital.read_file(SCP)


def test_a_lone_bad_file_exits_2_with_one_line(tmp_path, capsys):
    bad = _muse_with(tmp_path, lambda b: b[:5000], name="truncated.xml")
    code = main(["embed", str(bad), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert err[-1].startswith("ecgsoup embed: error: no record of") and "truncated.xml: malformed XML" in err[-1]


def test_a_missing_library_is_named_with_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyedflib", None)
    with pytest.raises(ImportError, match=r'pip install "ecgsoup\[hospital\]"'):
        hospital.read_file(EDF)


def test_listing_counts_formats_and_hashes_ids(folder):
    listing = list_records(folder)
    assert listing.source.kind == "files"
    assert listing.format_counts() == {"dicom": 2, "ge_muse": 1, "bdf": 1, "edf": 1, "hl7_aecg": 1,
                                       "philips_sierra": 1, "scp_ecg": 1}  # fmt: skip
    assert len(set(listing.record_ids)) == 8


def test_the_hospital_page_runs_as_written(tmp_path, monkeypatch, capsys):
    """The Python block of docs/hospital-files.md, on a folder of real exports."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "hospital-files.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"^```python\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    exports = tmp_path / "exports"
    exports.mkdir()
    for source in (MUSE, MUSE_DICOM, SCP):
        shutil.copy(source, exports / source.name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "hospital-files.md", "exec"), namespace)
    assert namespace["listing"].format_counts() == {"dicom": 1, "ge_muse": 1, "scp_ecg": 1}
    ds = namespace["ds"]
    assert ds.X.shape == (3, 5000, 12) and ds.lead_names[:6] == ("I", "II", "III", "aVR", "aVL", "aVF")
    derived = dict(zip(ds.metadata["format"], ds.metadata["derived_leads"]))
    assert derived == {"ge_muse": ("III", "aVR", "aVL", "aVF"), "dicom": (), "scp_ecg": ()}
    assert "{'dicom': 1, 'ge_muse': 1, 'scp_ecg': 1}" in capsys.readouterr().out


def test_hospital_files_behind_a_symlinked_folder_are_listed_once(tmp_path):
    # The symlink-following walk of issue 26 covers hospital exports as well as WFDB headers.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(MUSE, outside / MUSE.name)
    root = tmp_path / "input"
    root.mkdir()
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "again").symlink_to(outside, target_is_directory=True)  # a second way into the same folder
    (outside / "loop").symlink_to(root, target_is_directory=True)  # and a loop back up
    listing = list_records(root)
    assert len(listing) == 1 and listing.source.kind == "files"
