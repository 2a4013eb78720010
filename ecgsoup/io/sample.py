"""The real sample bundled with the package (LUDB at 100 Hz), for examples, docs and tests."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from ecgsoup.io.arrays import from_array
from ecgsoup.io.records import ECGDataset

__all__ = ["load_sample"]


def load_sample() -> ECGDataset:
    """The bundled real sample: all 200 LUDB records at 100 Hz, with labels.

    Lobachevsky University Electrocardiography Database v1.0.1 (ODC-By 1.0;
    cite Kalyakulina et al., see ``ecgsoup/data/README.md``), 12 leads, 10 s,
    resampled 500 -> 100 Hz and stored as int16 microvolts.  Note that this
    release range-normalises every lead to 1 mV peak-to-peak, so absolute
    amplitudes are not physiological.

    Returns
    -------
    dataset : ECGDataset
        ``X`` float32 ``(200, 1000, 12)`` in mV; ``metadata`` holds
        ``record_id, sex, age, rhythm, axis, conduction, extrasystoles,
        hypertrophy, pacing, ischemia, repolarization, other,
        rhythm_primary`` (multi-valued cells joined with ``"; "``).
    """
    data_dir = resources.files("ecgsoup.data")
    with resources.as_file(data_dir / "ludb_100hz.npz") as npz_path, np.load(npz_path) as npz:
        x, record_id = npz["x"], npz["record_id"]
        fs, lead_names, units = float(npz["fs"]), [str(n) for n in npz["lead_names"]], str(npz["units"])
    with resources.as_file(data_dir / "ludb_labels.csv") as csv_path:
        labels = pd.read_csv(csv_path, keep_default_na=False)
    if not np.array_equal(labels["record_id"].to_numpy(), record_id):
        raise RuntimeError(
            "ecgsoup/data is inconsistent: ludb_labels.csv and ludb_100hz.npz disagree on record order."
        )
    return from_array(x, fs, lead_names, units=units, record_ids=record_id.tolist(), metadata=labels)
