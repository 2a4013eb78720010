"""Build ecgsoup's bundled real sample, ``ecgsoup/data/``, from the shared LUDB copy.

All 200 LUDB v1.0.1 records (12 leads, 500 Hz, 10 s) are resampled to 100 Hz
with :func:`ecgsoup.signal.resample` (polyphase, anti-aliased) and stored as
int16 microvolts in a compressed ``ludb_100hz.npz``; the labels, the licence and
a README go beside it.  Run from the repository root::

    python scripts/make_sample.py [--source ../shared/data/ludb]

The output is deterministic: re-running it reproduces the same arrays.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from ecgsoup.signal import resample

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ludb"
TARGET_FS = 100
MAX_BYTES = 4 * 1024 * 1024

README = """\
# Bundled sample: LUDB at 100 Hz

`ludb_100hz.npz` holds **all 200 records of the Lobachevsky University
Electrocardiography Database (LUDB) v1.0.1**: real 12-lead ECGs, 10 s each,
recorded at 500 Hz and resampled here to {fs} Hz, the rate of ecgsoup's
default model. `ludb_labels.csv` holds their labels. Load both with
`ecgsoup.load_sample()`.

## Contents

* `ludb_100hz.npz` (numpy, compressed)
  * `x` int16, shape `{shape}`, **microvolts**, time-major `x[record, time, lead]`
  * `record_id` int32 `(200,)`: LUDB record numbers 1..200, same order as the CSV
  * `fs` = {fs}, `lead_names` = `{leads}`, `units` = `"uV"`
* `ludb_labels.csv`: one row per record: `record_id, sex, age, rhythm, axis,
  conduction, extrasystoles, hypertrophy, pacing, ischemia, repolarization,
  other, rhythm_primary`. Multi-valued cells are joined with `"; "`;
  `rhythm_primary` is the first rhythm statement (Sinus rhythm 143, Sinus
  bradycardia 25, Atrial fibrillation 15, ...).
* `LICENSE-LUDB.txt`: the Open Data Commons Attribution License (ODC-By 1.0)
  text shipped with LUDB.

## How it was made

`scripts/make_sample.py` reads LUDB's 500 Hz signals (int16 microvolts taken
from the original WFDB files, `round((adc - baseline) / gain * 1000)`),
resamples every lead to {fs} Hz with `ecgsoup.signal.resample` (polyphase,
`scipy.signal.resample_poly`, which low-pass filters before decimating), rounds
to int16 microvolts and saves with `np.savez_compressed`. Nothing else is
changed: no filtering beyond the anti-aliasing, no normalisation, no record
dropped.

## Caveat: amplitudes are range-normalised

In LUDB v1.0.1 every lead of every record has a peak-to-peak amplitude of
exactly 1 mV (each lead's header gain equals its digital range), i.e. the
publisher normalised amplitudes per lead. Morphology and timing are real;
absolute amplitudes, and amplitude ratios between leads, are not. Do not use
this sample for amplitude-based findings (voltage criteria for hypertrophy,
ST-level measurements).

## Attribution and citation

LUDB is made available under the ODC-By 1.0 licence (see `LICENSE-LUDB.txt`);
this derived sample keeps that licence. When you use it, cite:

* Kalyakulina, A., Yusipov, I., Moskalenko, V., Nikolskiy, A., Kosonogov, K.,
  Zolotykh, N., & Ivanchenko, M. (2021). *Lobachevsky University
  Electrocardiography Database* (version 1.0.1). PhysioNet.
  https://doi.org/10.13026/eegm-h675
* Kalyakulina, A. I., et al. (2020). LUDB: A New Open-Access Validation Tool
  for Electrocardiogram Delineation Algorithms. *IEEE Access*, 8, 186181-186190.
* Goldberger, A., et al. (2000). PhysioBank, PhysioToolkit, and PhysioNet.
  *Circulation*, 101(23), e215-e220.
"""


def build(source: Path, target: Path) -> Path:
    """Write the sample files into ``target`` and return the npz path."""
    npz = np.load(source / "ludb_12lead_500hz.npz")
    if str(npz["units"]) != "uV":
        raise ValueError(f"expected microvolts in {source}, found units={npz['units']}")
    fs = float(npz["fs"])
    x_mv = npz["x"].astype(np.float64) / 1000.0
    x100 = resample(x_mv, fs, TARGET_FS, axis=1)  # (200, 1000, 12), float32 mV
    x_uv = np.round(x100.astype(np.float64) * 1000.0)
    if np.abs(x_uv).max() > np.iinfo(np.int16).max:
        raise ValueError("resampled signal does not fit in int16 microvolts")
    target.mkdir(parents=True, exist_ok=True)
    out = target / "ludb_100hz.npz"
    np.savez_compressed(
        out,
        x=x_uv.astype(np.int16),
        record_id=npz["record_id"].astype(np.int32),
        fs=np.int32(TARGET_FS),
        lead_names=npz["lead_names"],
        units=np.array("uV"),
    )
    if out.stat().st_size > MAX_BYTES:
        raise ValueError(f"{out} is {out.stat().st_size} bytes, over the 4 MiB budget")
    shutil.copyfile(source / "ludb_labels.csv", target / "ludb_labels.csv")
    shutil.copyfile(source / "LICENSE.txt", target / "LICENSE-LUDB.txt")
    leads = ", ".join(str(n) for n in npz["lead_names"])
    (target / "README.md").write_text(README.format(fs=TARGET_FS, shape=tuple(x_uv.shape), leads=leads))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="shared LUDB folder")
    parser.add_argument("--target", type=Path, default=REPO / "ecgsoup" / "data")
    args = parser.parse_args(argv)
    out = build(args.source, args.target)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
