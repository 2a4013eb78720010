"""Turning files on disk into pretraining arrays ``(records, leads, time)``.

Accepted sources: ``.npz`` shards holding ``x`` (records, time, leads) with
``fs`` and ``lead_names`` (the layout of the shared data and of ``ecgsoup
embed`` inputs), or anything :func:`ecgsoup.io.read_records` reads (a WFDB
folder, a PTB-XL root, Challenge ``.hea``/``.mat`` folders).  Leads are matched
by name to the model's order, and every record goes through the model's
record-level recipe (resampling to its rate, and its band-pass when the
contract declares one): the same steps :class:`ecgsoup.ECGPreprocessor` applies
before embedding, so that pretraining and embedding see the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgsoup.backbones.stmem.config import EncoderConfig
from ecgsoup.backbones.stmem.model import stmem_contract
from ecgsoup.recipes import record_recipe
from ecgsoup.signal import check_finite, lead_indices

__all__ = ["load_pretraining_arrays"]


def _from_time_major(x: np.ndarray, fs: float, lead_names, config: EncoderConfig) -> np.ndarray:
    """``(records, time, leads)`` at ``fs`` -> the model's leads, after its record-level recipe, lead-major."""
    columns = lead_indices(list(lead_names), config.lead_names)
    contract = stmem_contract(config)
    x = record_recipe(contract.recipe)(np.asarray(x)[..., columns], float(fs), contract)
    return np.ascontiguousarray(np.swapaxes(x, -1, -2), dtype=np.float32)


def _load_npz(path: Path, config: EncoderConfig) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        missing = {"x", "fs", "lead_names"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}; expected x (records, time, leads), fs, lead_names.")
        return _from_time_major(data["x"], float(data["fs"]), [str(n) for n in data["lead_names"]], config)


def load_pretraining_arrays(sources, config: EncoderConfig) -> np.ndarray:
    """Concatenate every source into one float32 array ``(n, n_leads, T)`` at the model rate.

    Records shorter than the model window are dropped, as in ECG-Soup; longer
    records of different lengths are cropped to the shortest among them.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    arrays = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"Pretraining data {str(path)!r} does not exist.")
        if path.suffix == ".npz":
            arrays.append(_load_npz(path, config))
            continue
        from ecgsoup.io import read_records

        for record in read_records(path):
            signal = _from_time_major(record.signal[None], record.fs, record.lead_names, config)
            arrays.append(signal)
    kept = [a for a in arrays if a.shape[-1] >= config.n_samples]
    if not kept:
        raise ValueError(f"No record in {list(map(str, sources))} is at least {config.seconds:g} s long.")
    length = min(a.shape[-1] for a in kept)
    data = np.concatenate([a[..., :length] for a in kept])
    check_finite(data, "pretraining data")
    return data
