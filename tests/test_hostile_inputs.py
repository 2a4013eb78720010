"""Inputs that lie, refused with one line before they cost memory or give a wrong answer (issue 26).

Every case damages a copy of a real record, table or folder of the shared data
in ``tmp_path``: WFDB headers with impossible rates or the wrong format, tables
with repeated or empty ids and paths out of the root, malformed ``scp_codes``,
symlinked folders and loops, ``.npz`` entries of the wrong shape or of absurd
size.  Size bombs run in a child process under an address-space limit, so a
regression fails there instead of exhausting the machine.
"""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from ecgsoup.cli import EXIT_USAGE, main
from ecgsoup.io import RecordError, list_records, read_ptbxl, read_wfdb

RECORD = "00841_lr"  # PTB-XL, 12 leads, 100 Hz, 1,000 samples, format 16 (24,000 bytes)


@pytest.fixture
def wfdb_copy(shared_data, tmp_path):
    """A copy of one real PTB-XL record in its own folder; returns its stem."""
    source = shared_data / "ptbxl_sample" / "records100" / "00000" / RECORD
    folder = tmp_path / "wfdb"
    folder.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(source.with_suffix(suffix), folder / f"{RECORD}{suffix}")
        os.chmod(folder / f"{RECORD}{suffix}", 0o644)
    return folder / RECORD


def _edit_record_line(stem, **fields):
    """Rewrite fields of the header's record line (fs, n_samples) or of every signal line (fmt)."""
    header = stem.with_suffix(".hea")
    lines = header.read_text().splitlines()
    first = lines[0].split()
    if "fs" in fields:
        first[2] = fields["fs"]
    if "n_samples" in fields:
        first[3] = fields["n_samples"]
    lines[0] = " ".join(first)
    if "fmt" in fields:
        lines[1:13] = [" ".join([ln.split()[0], fields["fmt"], *ln.split()[2:]]) for ln in lines[1:13]]
    header.write_text("\n".join(lines) + "\n")


def _error_line(capsys, *needles):
    """The final error of a run whose records all failed: each named on its line, then one error line."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("ecgsoup embed: error: no record"), err
    for needle in needles:
        assert needle in err.splitlines()[-1], err
    return err


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- WFDB headers that lie ---------------------------------------------------------------------


@pytest.mark.parametrize("fs", ["-100", "0", "0.001", "1e9", "abc"])
def test_impossible_sampling_rate_is_refused_naming_the_header(wfdb_copy, tmp_path, capsys, fs):
    _edit_record_line(wfdb_copy, fs=fs)
    # Was: -100 read as wfdb's default 250 Hz; 0.001 Hz resampled to a 10**8-sample record.
    with pytest.raises(RecordError, match=rf"{RECORD}.hea: sampling rate '{fs}' on the record line is not a "
                                          r"plausible ECG rate"):  # fmt: skip
        read_wfdb(wfdb_copy)
    status = main(["embed", str(wfdb_copy.parent), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"])
    assert status == EXIT_USAGE
    _error_line(capsys, "not a plausible ECG rate")


def test_format_that_does_not_match_the_file_size_is_refused(wfdb_copy):
    _edit_record_line(wfdb_copy, fmt="8")  # 16-bit samples declared as 8-bit first differences
    # Was: read as garbage of plausible size (the file is twice what the header implies).
    with pytest.raises(RecordError, match=r"holds 24000 bytes, but 00841_lr.hea implies 12000 .* format 8\): "
                                          r"the header's format or number of samples is wrong"):  # fmt: skip
        read_wfdb(wfdb_copy)
    _edit_record_line(wfdb_copy, fmt="16", n_samples="1200")
    with pytest.raises(RecordError, match=r"cannot read the signal file 00841_lr.dat: it holds 24000 bytes.*truncated"):
        read_wfdb(wfdb_copy)


def test_signal_file_name_may_not_leave_the_record_folder(wfdb_copy):
    header = wfdb_copy.with_suffix(".hea")
    header.write_text(header.read_text().replace(f"{RECORD}.dat", "../../../../../etc/passwd"))
    # wfdb's header grammar already rejects a folder in the name; ecgsoup checks it again before reading.
    with pytest.raises(RecordError, match=r"00841_lr.hea: (invalid or truncated WFDB header|signal file '\.\./)"):
        read_wfdb(wfdb_copy)


def _under_memory_limit(code: str, headroom_mb: int = 768) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose address space may grow only ``headroom_mb`` after its imports."""
    if not sys.platform.startswith("linux"):
        pytest.skip("address-space limits are tested on Linux")
    prelude = textwrap.dedent(
        f"""
        import resource, os
        import numpy, scipy.signal, pandas, wfdb, zipfile
        import ecgsoup.io, ecgsoup.signal
        size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = size + {headroom_mb} * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def test_absurd_sizes_are_refused_before_allocation(wfdb_copy, tmp_path):
    _edit_record_line(wfdb_copy, n_samples=str(10**11))  # 1.2 x 10**12 values: terabytes as float64
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w") as archive:  # a header claiming one record of 2**31 x 12 float32, no data
        with archive.open("x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (1, 2**31, 12)})  # fmt: skip
        for name, value in {"fs": np.float64(500), "lead_names": np.array(["I"] * 12)}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, value)
    result = _under_memory_limit(
        f"""
        from ecgsoup.io import RecordError, read_wfdb, list_records
        from ecgsoup.signal import resample
        for call in (lambda: read_wfdb({str(wfdb_copy)!r}), lambda: list_records({str(bomb)!r}),
                     lambda: resample(numpy.zeros((1000, 12), numpy.float32), 1.0, 100000.0)):
            try:
                call()
            except ValueError as error:
                print("refused:", str(error).splitlines()[0])
            else:
                print("accepted")
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused:") for line in lines), result.stdout
    assert "1200000000000 values" in lines[0] and "more than ecgsoup reads at once" in lines[0]
    assert "values per record" in lines[1] and "shape (1, 2147483648, 12)" in lines[1]
    assert "gives 100000000 samples per record" in lines[2]


# --- .npz entries of the wrong shape ---------------------------------------------------------


@pytest.mark.parametrize(
    "entries, message",
    [
        (dict(fs=np.array([500.0, 500.0])), r"fs is shape \(2,\); it must be one sampling rate"),
        (dict(fs=np.float64(-500)), r"fs is -500.0; it must be one sampling rate"),
        (dict(fs=np.float64(0.01)), r"fs is 0.01; it must be one sampling rate"),
        (dict(lead_names=np.array("I II III")), r"lead_names is <U8 of shape \(\); it must list one name per lead"),
        (dict(record_id=np.array(["a", "", "c", "d"])), r"'record_id' has 1 empty id\(s\) \(row\(s\) 2"),
        (dict(record_id=np.array([1.0, np.nan, 3.0, 4.0])), r"'record_id' has 1 empty id\(s\)"),
        (dict(record_id=np.array([7, 8, 7, 9])), r"'record_id' gives 1 id\(s\) to several records \(7 in rows 1, 3\)"),
    ],
    ids=["fs-array", "fs-negative", "fs-tiny", "lead-names-string", "empty-id", "nan-id", "duplicate-id"],
)
def test_npz_entries_of_the_wrong_shape_are_refused(ludb, tmp_path, capsys, entries, message):
    arrays = dict(x=ludb["x"][:4], fs=ludb["fs"], lead_names=ludb["lead_names"], record_id=ludb["record_id"][:4])
    path = tmp_path / "in.npz"
    np.savez(path, **{**arrays, **entries})
    with pytest.raises(ValueError, match=message):
        list_records(path)
    assert main(["embed", str(path), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"]) == EXIT_USAGE
    _one_line(capsys, "in.npz")


# --- tables that lie ---------------------------------------------------------------------------


@pytest.fixture
def ptbxl_copy(shared_data, tmp_path):
    """The PTB-XL sample's records100 and labels.csv, copied (30 real records)."""
    root = tmp_path / "ptbxl"
    shutil.copytree(shared_data / "ptbxl_sample" / "records100", root / "records100")
    shutil.copy(shared_data / "ptbxl_sample" / "labels.csv", root / "labels.csv")
    return root


def _edit_table(root, change):
    import pandas as pd

    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    change(table)
    table.to_csv(root / "labels.csv", index=False)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.loc.__setitem__((3, "ecg_id"), t.loc[1, "ecg_id"]), r"gives 1 id\(s\) to several records"),
        (lambda t: t.loc.__setitem__((5, "ecg_id"), ""), r"column 'ecg_id' has 1 empty id\(s\) \(row\(s\) 6"),
        (lambda t: t.loc.__setitem__((2, "filename_lr"), "../../outside/00841_lr"), r"leaves the PTB-XL root"),
        (lambda t: t.loc.__setitem__((2, "filename_lr"), "/etc/passwd"), r"leaves the PTB-XL root"),
        (lambda t: t.loc.__setitem__((2, "filename_lr"), ""), r"row 3, column 'filename_lr' is empty"),
    ],
    ids=["duplicate-id", "empty-id", "dotdot-path", "absolute-path", "empty-path"],
)
def test_ptbxl_table_that_lies_is_refused(ptbxl_copy, tmp_path, capsys, change, message):
    _edit_table(ptbxl_copy, change)
    # Was: two recordings under one id; every id turned into '841.0'; files read outside the root.
    with pytest.raises(ValueError, match=message):
        list_records(ptbxl_copy)
    with pytest.raises(ValueError, match=message):
        read_ptbxl(ptbxl_copy)
    assert main(["embed", str(ptbxl_copy), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"]) == 2
    _one_line(capsys, "labels.csv")


def test_ptbxl_record_linked_out_of_the_root_is_refused(ptbxl_copy, shared_data, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    stem = ptbxl_copy / "records100" / "00000" / RECORD
    shutil.copy(stem.with_suffix(".hea"), outside / f"{RECORD}.hea")
    stem.with_suffix(".hea").unlink()
    stem.with_suffix(".hea").symlink_to(outside / f"{RECORD}.hea")
    with pytest.raises(RecordError, match=r"00841_lr.hea: links to .*outside.*, outside the PTB-XL root"):
        read_ptbxl(ptbxl_copy, on_error="raise")
    listing = list_records(ptbxl_copy)
    with pytest.raises(RecordError, match="outside the PTB-XL root"):
        listing.source.read(listing.items[0], listing.record_ids[0])


@pytest.mark.parametrize(
    "cell, message",
    [
        ("{'NORM': 100.0", "not a valid dict string (malformed)"),
        ("{" * 200_000, "characters long, not a dict of codes"),
        ("[" * 200_000, "neither a dict string nor codes joined by ';'"),
        ("{'NORM': " + "[" * 3_000 + "]" * 3_000 + "}", "not a valid dict string"),
        ("{'NORM': " + "9" * 100_000 + "}", "characters long"),
        ("{'NORM': " + "9" * 5_000 + "}", "not a valid dict string"),
        ("{1: 2}", "not a dict of statement codes"),
        ("['NORM', 'SR']", "neither a dict string nor codes joined by ';'"),
        ("__import__('os')", "neither a dict string nor codes joined by ';'"),
    ],
    ids=["unclosed", "200k-braces", "200k-brackets", "3k-nested", "100k-digits", "5k-digits", "int-keys", "list",
         "call"],
)
def test_malformed_scp_codes_are_one_line(ptbxl_copy, tmp_path, capsys, cell, message):
    def set_cell(table):
        table["scp_codes"] = "{'NORM': 100.0}"
        table.loc[4, "scp_codes"] = cell

    _edit_table(ptbxl_copy, set_cell)
    with pytest.raises(ValueError, match=rf"labels.csv: row 5: scp_codes .*{re.escape(message)}"):
        list_records(ptbxl_copy)
    assert main(["embed", str(ptbxl_copy), "--out", str(tmp_path / "s.npz"), "--model", "random", "--quiet"]) == 2
    _one_line(capsys, "row 5", "NORM;SR")


def test_scp_codes_joined_by_semicolons_are_read(ptbxl_copy):
    def set_cells(table):
        table["scp_codes"] = ["NORM;SR" if i % 2 else "{'IMI': 50.0, 'SR': 0.0}" for i in range(len(table))]

    _edit_table(ptbxl_copy, set_cells)
    dataset = read_ptbxl(ptbxl_copy)
    assert sorted(dataset.metadata["scp_codes"][1]) == ["NORM", "SR"]
    assert dataset.metadata["scp_codes"][0] == {"IMI": 50.0, "SR": 0.0}


def test_labels_with_an_empty_id_are_refused(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,y\n1,a\n,b\n3,a\n")
    store = tmp_path / "missing.npz"
    store.write_bytes(b"")  # refused before the input is looked at
    status = main(["evaluate", str(store), "--labels", str(labels), "--target", "y"])
    assert status == EXIT_USAGE
    _one_line(capsys, "column 'record_id' has 1 empty id(s) (row(s) 2")


# --- folders -------------------------------------------------------------------------------------


def test_symlinked_sub_folders_are_followed_once_and_loops_are_cut(shared_data, tmp_path):
    ludb = shared_data / "wfdb_samples" / "ludb"
    *stems, own = sorted({p.stem for p in ludb.glob("*.hea")})[:3]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for stem in stems:
        for suffix in (".hea", ".dat"):
            shutil.copy(ludb / f"{stem}{suffix}", outside / f"{stem}{suffix}")
    root = tmp_path / "input"
    (root / "own").mkdir(parents=True)
    for suffix in (".hea", ".dat"):
        shutil.copy(ludb / f"{own}{suffix}", root / "own" / f"{own}{suffix}")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "again").symlink_to(outside, target_is_directory=True)  # a second way into the same folder
    (outside / "loop").symlink_to(root, target_is_directory=True)  # and a loop back up
    # Was: the records behind "linked" never listed, and the run said "1 of 1 embedded".
    listing = list_records(root)
    assert len(listing) == 1 + len(stems)
    assert len(set(listing.record_ids)) == len(listing.record_ids)
    assert all(read_wfdb(item).signal.shape[1] == 12 for item in listing.items[1:])


# --- outputs checked before computing, and never written by two runs -----------------------------------


def _labels(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,y\n1,a\n2,b\n")
    return labels


def test_evaluate_and_demo_refuse_an_out_that_is_a_file_before_computing(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("keep me")
    missing_input = tmp_path / "nothing-here"  # reached only if --out were accepted first
    # Was: the whole probe ran, then a traceback when writing.
    status = main(["evaluate", str(missing_input), "--labels", str(_labels(tmp_path)), "--target", "y",
                   "--out", str(out)])  # fmt: skip
    assert status == EXIT_USAGE
    _one_line(capsys, "--out", "is an existing file, not a folder")
    assert main(["demo", "--out", str(out)]) == EXIT_USAGE
    _one_line(capsys, "is an existing file, not a folder")
    assert out.read_text() == "keep me"


def test_a_second_evaluate_on_the_same_out_is_refused(tmp_path, capsys):
    from filelock import FileLock

    out = tmp_path / "results"
    out.mkdir()
    with FileLock(str(out / ".ecgsoup.lock")):  # a first run holds the folder
        status = main(["evaluate", str(tmp_path / "nothing"), "--labels", str(_labels(tmp_path)), "--target", "y",
                       "--out", str(out)])  # fmt: skip
    assert status == EXIT_USAGE
    _one_line(capsys, "is being written by another ecgsoup evaluate run")


def test_operating_system_errors_are_one_line(ludb, tmp_path, capsys):
    path = tmp_path / "in.npz"
    np.savez(path, x=ludb["x"][:2], fs=ludb["fs"], lead_names=ludb["lead_names"])
    out = tmp_path / ("x" * 300 + ".npz")  # longer than a file name may be
    status = main(["embed", str(path), "--out", str(out), "--model", "random", "--quiet"])
    assert status == EXIT_USAGE
    _one_line(capsys, "File name too long; use a shorter name.")


# --- labels for evaluate -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ptbxl_store(shared_data, tmp_path_factory):
    """The 30 real PTB-XL sample records, embedded once by an untrained 2-block encoder."""
    from ecgsoup.backbones.stmem import get_config, random_model
    from ecgsoup.store import embed_to_store

    config = get_config("ecgsoup-100hz-tiny").replace(name="test-100hz-2blocks", depth=2)
    store = tmp_path_factory.mktemp("store") / "ptbxl.npz"
    embed_to_store(shared_data / "ptbxl_sample", store, model=random_model(config, seed=1))
    return store


def _labels_with(shared_data, tmp_path, column):
    import pandas as pd

    table = pd.read_csv(shared_data / "ptbxl_sample" / "labels.csv", keep_default_na=False, dtype=str)
    table["y"] = column(len(table))
    path = tmp_path / "labels.csv"
    table.to_csv(path, index=False)
    return path


def test_missing_value_markers_are_empty_not_a_class(ptbxl_store, shared_data, tmp_path, capsys):
    markers = ["NA", "NaN", "NULL", "n/a"]
    labels = _labels_with(shared_data, tmp_path, lambda n: [markers[i % 4] if i % 3 == 0 else "AF" if i % 2 else
                                                            "SR" for i in range(n)])  # fmt: skip
    status = main(["evaluate", str(ptbxl_store), "--labels", str(labels), "--target", "y", "--fusions", "none",
                   "--folds", "none", "--cv", "2", "--positive", "AF"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    # Was: NA, NaN and NULL became classes of their own.
    assert "empty labels: 10 records" in out and "NULL" not in out and "NaN" not in out


def test_dict_literal_cells_are_their_keys(ptbxl_store, shared_data, tmp_path, capsys):
    cells = ["{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0, 'SR': 0.0}", "{'NORM': 80.0}"]
    labels = _labels_with(shared_data, tmp_path, lambda n: [cells[i % 3] for i in range(n)])
    status = main(["evaluate", str(ptbxl_store), "--labels", str(labels), "--target", "y", "--fusions", "none",
                   "--folds", "none", "--cv", "2"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    # Was: split on commas into classes such as "{'NORM': 100.0".
    assert "task: multilabel" in out and "NORM 20" in out and "SR 20" in out and "IMI 10" in out
    assert "{'NORM'" not in out

    labels = _labels_with(shared_data, tmp_path, lambda n: ["{'NORM': 100.0"] + [cells[i % 3] for i in range(1, n)])
    assert main(["evaluate", str(ptbxl_store), "--labels", str(labels), "--target", "y"]) == EXIT_USAGE
    _one_line(capsys, "--target 'y', record 841", "not a valid dict string")
