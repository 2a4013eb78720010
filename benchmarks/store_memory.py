"""Peak memory of ``ecgsoup embed INPUT --out store.zarr`` against the number of records.

For each input kind (an ``.npz`` written by ``np.savez``, one written by
``np.savez_compressed``, and a folder of WFDB records), this writes the real
LUDB records (500 Hz, 12 leads, 10 s, int16 microvolts) tiled to N and to
``--factor`` x N records, embeds each input with the command line in a
**fresh process**, and reads that process's peak resident set
(``ru_maxrss`` from ``os.wait4``).  The input and the store live on disk, so
a flat peak means the reader streams the records: the target is a peak
ratio of about 1.0 between the two counts for every kind.

Run::

    python benchmarks/store_memory.py [--records 200] [--factor 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import shared_data_path, write_results  # noqa: E402

MiB = 2**20
KINDS = ["npz (np.savez)", "npz (np.savez_compressed)", "WFDB folder"]


def write_input(kind: str, x: np.ndarray, fs: int, leads, folder: Path) -> Path:
    ids = np.arange(len(x))
    if kind.startswith("npz"):
        path = folder / "input.npz"
        save = np.savez_compressed if "compressed" in kind else np.savez
        save(path, x=x, fs=fs, lead_names=np.asarray(leads), record_id=ids, units="uV")
        return path
    import wfdb

    path = folder / "wfdb"
    path.mkdir()
    for i, record in enumerate(x):
        wfdb.wrsamp(f"r{i:05d}", fs=fs, units=["uV"] * len(leads), sig_name=list(leads),
                    d_signal=record.astype(np.int16), fmt=["16"] * len(leads), adc_gain=[1.0] * len(leads),
                    baseline=[0] * len(leads), write_dir=str(path))
    return path


def embed_peak(source: Path, out: Path, threads: int) -> int:
    """Peak RSS (bytes) of one ``ecgsoup embed`` process."""
    cmd = [sys.executable, "-m", "ecgsoup.cli", "embed", str(source), "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile() as stderr:  # a pipe could fill up and block the child
        process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"ecgsoup embed {source} failed:\n{err}")
    return usage.ru_maxrss * 1024  # KiB on Linux


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--factor", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    data = np.load(shared_data_path() / "ludb" / "ludb_12lead_500hz.npz")
    x, fs, leads = data["x"], int(data["fs"]), [str(n) for n in data["lead_names"]]
    counts = [args.records, args.records * args.factor]
    rows = []
    for kind in KINDS:
        peaks, sizes = [], []
        for n in counts:
            tiled = np.concatenate([x] * -(-n // len(x)))[:n]
            with tempfile.TemporaryDirectory(prefix="ecgsoup-store-mem-") as tmp:
                source = write_input(kind, tiled, fs, leads, Path(tmp))
                sizes.append(int(tiled.nbytes))
                peaks.append(embed_peak(source, Path(tmp) / "store.zarr", args.threads))
            print(f"{kind}, {n} records: peak {peaks[-1] / MiB:.0f} MiB", flush=True)
        rows.append({"input": kind, "records": counts, "signal_bytes": sizes, "peak_rss_bytes": peaks,
                     "ratio": peaks[1] / peaks[0], "growth_bytes_per_record": (peaks[1] - peaks[0]) / (counts[1] - counts[0])})
    lines = [
        "# Memory of `ecgsoup embed` by input kind",
        "",
        f"Real LUDB records (500 Hz, 12 leads, 10 s, int16) tiled to {counts[0]} and {counts[1]} records; "
        "each run `ecgsoup embed INPUT --out store.zarr` in a fresh process; peak resident set of that "
        f"process. The signals alone are {x[0].nbytes} bytes per record as int16 ({x[0].nbytes * 2} as float32).",
        "",
        f"| input | peak MiB, {counts[0]} records | peak MiB, {counts[1]} records | ratio | growth, bytes per record |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['input']} | {r['peak_rss_bytes'][0] / MiB:.0f} | {r['peak_rss_bytes'][1] / MiB:.0f} | "
                     f"{r['ratio']:.2f} | {r['growth_bytes_per_record']:.0f} |")
    flat = all(abs(r["ratio"] - 1) <= 0.05 for r in rows)
    lines += ["", f"Flat (ratio within 1.00 ± 0.05 for every kind): **{'yes' if flat else 'no'}**."]
    md = "\n".join(lines)
    print(md)
    write_results("store_memory", {"rows": rows, "flat": flat}, md, timing=False)


if __name__ == "__main__":
    main()
