"""Embedding stores: the layer-wise embeddings of many ECGs, on disk, resumable.

:func:`embed_to_store` reads every record of an input (a WFDB/Challenge
folder, a PTB-XL root, or an ``.npz`` of arrays), brings each one into the
model's contract with :class:`~ecgsoup.preprocessing.ECGPreprocessor` (using
the record's *own* sampling rate and lead names), and embeds all layers with
:class:`~ecgsoup.embedding.LayerwiseEmbedder`.  Records longer than the model
window are windowed and averaged by the embedder.  :func:`open_store` reads the
result back as the 2-D array of :mod:`ecgsoup.layout`, ready for
``LayerSelector``, ``PPA``, ``PMA`` or any scikit-learn estimator.

Store layout (zarr v3 group, or the same names as arrays in one ``.npz``)::

    embeddings   float32 (n_records, n_layers, dim)   pooled h_0 .. h_L per record
    record_id    int64 or str (n_records,)            in input order
    status       int8 (n_records,)                    0 pending, 1 done, 2 failed
    error        str (n_records,)                     why a record failed ("" otherwise)
    norm_weight  float32 (dim,)                       the encoder's final LayerNorm
    norm_bias    float32 (dim,)
    attrs        format, model config (the preprocessing contract), model sha256,
                 ecgsoup version, precision, window stride, input settings

**Resumable.** The list of records is fixed when the store is created; every
run computes only the records whose status is not "done" (failed ones are
retried: the file may have been fixed), one block of ``chunk_size`` records at
a time, and marks a block done only after its embeddings are written.  A run
that is killed, or stopped with ``limit``, loses at most one block.  Memory
is O(``chunk_size``) for zarr; an ``.npz`` store is rewritten after every
block (atomically), so it suits up to some tens of thousands of records.

**Bad records** (unreadable file, NaN samples, missing leads, too short) are
never dropped silently: each one is reported with a
:class:`SkippedRecordWarning`, marked failed in ``status`` with its message
in ``error``, and listed by :func:`open_store` in ``errors``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = [
    "StoreError",
    "SkippedRecordWarning",
    "StoredEmbeddings",
    "EmbedSummary",
    "embed_to_store",
    "open_store",
    "is_store",
]

STORE_FORMAT = "ecgsoup-embeddings"
STORE_FORMAT_VERSION = 1
PENDING, DONE, FAILED = 0, 1, 2
DEFAULT_CHUNK_SIZE = 256
_RANDOM_ALIAS = {"random": "random:ecgsoup-100hz-tiny"}
# Settings that change the stored numbers: a resumed run must match them.
_RESUME_KEYS = ("model_sha256", "precision", "window_stride", "lead_map", "pad", "sampling_rate_override")


class StoreError(ValueError):
    """A store cannot be used: unknown format, or written with other settings or input."""


class SkippedRecordWarning(UserWarning):
    """A record could not be embedded; it is marked failed in the store, with the reason."""


# --- reading a store ------------------------------------------------------------------


class StoredEmbeddings(NamedTuple):
    """What :func:`open_store` returns; unpacks as ``X, record_ids, attrs, errors``.

    Attributes
    ----------
    X : ndarray of shape (n_done, (n_layers + 2) * dim), float32
        Embedded records only, in the column layout of :mod:`ecgsoup.layout`
        (``[h_0 | ... | h_L | norm_weight | norm_bias]``): feed it to
        ``LayerSelector(n_layers=attrs["n_layers"])``, ``PPA``, ``PMA`` or
        :func:`ecgsoup.evaluate.layer_probe` directly.
    record_ids : list
        Identifier of each row of ``X``.
    attrs : dict
        The store's attributes (model config, ``model_sha256``,
        ``ecgsoup_version``, ``precision``, ``n_layers``, ``dim``, ...) and the
        counts ``n_records``, ``n_done``, ``n_failed``, ``n_pending``.
    errors : pandas.DataFrame
        ``record_id``, ``message`` of every record that failed.
    """

    X: np.ndarray
    record_ids: list
    attrs: dict
    errors: pd.DataFrame

    def feature_names(self) -> np.ndarray:
        """Column names of ``X`` (``layer03_dim0127``, ``norm_weight_dim0127`` ...)."""
        from ecgsoup.layout import feature_names

        return feature_names(range(self.attrs["n_layers"]), self.attrs["dim"], include_norm=True)

    def to_frame(self) -> pd.DataFrame:
        """``X`` as a DataFrame indexed by ``record_id``, with :meth:`feature_names` columns."""
        return pd.DataFrame(
            self.X, index=pd.Index(self.record_ids, name="record_id"), columns=self.feature_names()
        )


def is_store(path) -> bool:
    """Whether ``path`` is an ecgsoup embedding store (zarr directory or ``.npz``)."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / "zarr.json").exists():
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("attributes", {}).get("format") == STORE_FORMAT
    if path.is_file() and path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:  # lazy: lists members only
                return "attrs" in data.files and json.loads(str(data["attrs"])).get("format") == STORE_FORMAT
        except (OSError, ValueError):
            return False
    return False


def open_store(path) -> StoredEmbeddings:
    """Read an embedding store written by :func:`embed_to_store` / ``ecgsoup embed``.

    Parameters
    ----------
    path : str or Path
        A ``.zarr`` directory or an ``.npz`` file.

    Returns
    -------
    stored : StoredEmbeddings
        ``(X, record_ids, attrs, errors)``; see :class:`StoredEmbeddings`.
        Only records whose embedding is complete are in ``X``; a store with
        pending records (an interrupted run) gives a warning naming how many.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    StoreError
        If ``path`` is not an ecgsoup embedding store.

    Examples
    --------
    >>> from ecgsoup.store import open_store                    # doctest: +SKIP
    >>> X, ids, attrs, errors = open_store("ptbxl.zarr")       # doctest: +SKIP
    >>> from ecgsoup.fusion import PPA                          # doctest: +SKIP
    >>> PPA(n_layers=attrs["n_layers"]).fit_transform(X).shape  # doctest: +SKIP
    (21799, 192)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such embedding store.")
    backend = _open_backend(path, mode="r")
    status = backend.read("status")
    record_ids = backend.record_ids()
    done = np.flatnonzero(status == DONE)
    embeddings = backend.read_rows("embeddings", done)
    weight, bias = backend.read("norm_weight"), backend.read("norm_bias")
    n, n_layers, dim = embeddings.shape
    X = np.concatenate(
        [embeddings.reshape(n, n_layers * dim), np.broadcast_to(weight, (n, dim)), np.broadcast_to(bias, (n, dim))],
        axis=1,
    ).astype(np.float32, copy=False)
    failed = np.flatnonzero(status == FAILED)
    messages = backend.read("error")
    errors = pd.DataFrame(
        {"record_id": [record_ids[i] for i in failed], "message": [str(messages[i]) for i in failed]}
    )
    attrs = dict(backend.attrs)
    counts = dict(
        n_records=len(status),
        n_done=int(done.size),
        n_failed=int(failed.size),
        n_pending=int((status == PENDING).sum()),
    )
    attrs.update(counts)
    if counts["n_pending"]:
        warnings.warn(
            f"{path} is incomplete: {counts['n_pending']} of {counts['n_records']} records are not "
            "embedded yet (an interrupted or --limit run). Run `ecgsoup embed` again with the same "
            "input and --out to finish; only the missing records are computed.",
            stacklevel=2,
        )
    return StoredEmbeddings(X, [record_ids[i] for i in done], attrs, errors)


# --- store backends -------------------------------------------------------------------


def _store_kind(path: Path, requested: str | None = None) -> str:
    """``"zarr"`` or ``"npz"`` from ``requested``, an existing store, or the extension."""
    if requested is not None:
        if requested not in ("zarr", "npz"):
            raise StoreError(f"format={requested!r}; expected 'zarr' or 'npz'.")
        return requested
    if path.is_dir() and (path / "zarr.json").exists():
        return "zarr"
    if path.suffix == ".npz" and (path.is_file() or not path.exists()):
        return "npz"
    if path.suffix == ".zarr" and not path.is_file():
        return "zarr"
    if path.exists():
        raise StoreError(f"{path} is not an ecgsoup embedding store (a .zarr directory or a .npz file).")
    raise StoreError(
        f"Cannot tell the store format of {path}: name it *.zarr or *.npz, or pass format='zarr'/'npz' "
        "(--format on the command line)."
    )


def _open_backend(path: Path, mode: str, kind: str | None = None):
    kind = _store_kind(path, kind)
    backend = _ZarrStore(path, mode) if kind == "zarr" else _NpzStore(path, mode)
    if mode == "r" or path.exists():
        fmt = backend.attrs.get("format")
        if fmt != STORE_FORMAT:
            raise StoreError(f"{path} is not an ecgsoup embedding store (format={fmt!r}).")
        if backend.attrs.get("format_version", 0) > STORE_FORMAT_VERSION:
            raise StoreError(
                f"{path} was written by a newer ecgsoup (store format "
                f"{backend.attrs['format_version']}); upgrade ecgsoup to read it."
            )
    return backend


def _import_zarr():
    try:
        import zarr
    except ImportError:
        raise StoreError(
            "zarr stores need the zarr package: pip install 'ecgsoup[dask]' (or pip install zarr), "
            "or write an .npz store instead."
        ) from None
    return zarr


class _ZarrStore:
    """Zarr v3 group; rows are written in place, so memory stays O(block)."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self.zarr = _import_zarr()
        self.group = None
        if path.exists():
            try:
                self.group = self.zarr.open_group(str(path), mode="r" if mode == "r" else "r+")
            except Exception as exc:  # zarr raises several types for a non-store folder
                raise StoreError(f"{path} is not a readable zarr store ({type(exc).__name__}: {exc}).") from None

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs) if self.group is not None else {}

    def create(self, record_ids, n_layers, dim, chunk, attrs, norm_weight, norm_bias) -> None:
        from zarr.dtype import VariableLengthUTF8

        zarr, n = self.zarr, len(record_ids)
        group = zarr.open_group(str(self.path), mode="w")
        chunk = max(1, min(chunk, n))
        group.create_array("embeddings", shape=(n, n_layers, dim), chunks=(chunk, n_layers, dim),
                           dtype="float32", fill_value=0.0)  # fmt: skip
        group.create_array("status", shape=(n,), chunks=(chunk,), dtype="int8", fill_value=PENDING)
        group.create_array("error", shape=(n,), chunks=(chunk,), dtype=VariableLengthUTF8(), fill_value="")
        ids = _ids_array(record_ids)
        if ids.dtype.kind in "iu":
            group.create_array("record_id", data=ids.astype(np.int64), chunks=(max(1, min(n, 65536)),))
        else:
            array = group.create_array("record_id", shape=(n,), chunks=(max(1, min(n, 65536)),),
                                       dtype=VariableLengthUTF8(), fill_value="")  # fmt: skip
            array[:] = ids.astype(object)
        group.create_array("norm_weight", data=np.asarray(norm_weight, np.float32))
        group.create_array("norm_bias", data=np.asarray(norm_bias, np.float32))
        group.attrs.update(attrs)
        self.group = group

    def read(self, name) -> np.ndarray:
        return np.asarray(self.group[name][...])

    def read_rows(self, name, rows) -> np.ndarray:
        array = self.group[name]
        if rows.size == array.shape[0]:
            return np.asarray(array[...])
        return np.asarray(array.get_orthogonal_selection((rows,))) if rows.size else np.zeros(
            (0, *array.shape[1:]), array.dtype
        )

    def record_ids(self) -> list:
        return _ids_list(self.read("record_id"))

    def write(self, positions, embeddings, status, errors) -> None:
        # Embeddings first, status last: a run killed in between recomputes the rows.
        positions = np.asarray(positions)
        if positions.size == 0:
            return
        start, stop = int(positions.min()), int(positions.max()) + 1
        if np.array_equal(positions, np.arange(start, stop)):
            self.group["embeddings"][start:stop] = embeddings
            self.group["error"][start:stop] = np.asarray(errors, dtype=object)
            self.group["status"][start:stop] = status
        else:
            self.group["embeddings"].set_orthogonal_selection((positions,), embeddings)
            self.group["error"].set_orthogonal_selection((positions,), np.asarray(errors, dtype=object))
            self.group["status"].set_orthogonal_selection((positions,), status)

    def flush(self) -> None:
        """Rows are on disk as soon as they are written."""


class _NpzStore:
    """One ``.npz``, held in memory and rewritten atomically after every block."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self.arrays: dict = {}
        self._attrs: dict = {}
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    self.arrays = {key: data[key] for key in data.files}
                self._attrs = json.loads(str(self.arrays.pop("attrs")))
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"{path} is not an ecgsoup embedding store ({type(exc).__name__}: {exc}).") from None

    @property
    def attrs(self) -> dict:
        return dict(self._attrs)

    def create(self, record_ids, n_layers, dim, chunk, attrs, norm_weight, norm_bias) -> None:
        n = len(record_ids)
        self.arrays = {
            "embeddings": np.zeros((n, n_layers, dim), np.float32),
            "record_id": _ids_array(record_ids),
            "status": np.full(n, PENDING, np.int8),
            "error": np.full(n, "", dtype=object),
            "norm_weight": np.asarray(norm_weight, np.float32),
            "norm_bias": np.asarray(norm_bias, np.float32),
        }
        self._attrs = dict(attrs)
        self.flush()

    def read(self, name) -> np.ndarray:
        return self.arrays[name]

    def read_rows(self, name, rows) -> np.ndarray:
        return self.arrays[name][rows]

    def record_ids(self) -> list:
        return _ids_list(self.arrays["record_id"])

    def write(self, positions, embeddings, status, errors) -> None:
        positions = np.asarray(positions)
        self.arrays["embeddings"][positions] = embeddings
        self.arrays["status"][positions] = status
        errors_column = self.arrays["error"].astype(object)
        errors_column[positions] = errors
        self.arrays["error"] = errors_column
        self.flush()

    def flush(self) -> None:
        arrays = dict(self.arrays)
        # Plain unicode arrays: an npz must load without allow_pickle.
        arrays["error"] = np.asarray([str(e) for e in arrays["error"]], dtype=str)
        arrays["attrs"] = np.asarray(json.dumps(self._attrs))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp.npz", dir=self.path.parent)
        os.close(handle)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, self.path)  # atomic: a kill leaves the previous, complete file
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _ids_array(record_ids) -> np.ndarray:
    if all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in record_ids):
        return np.asarray(record_ids, dtype=np.int64)
    return np.asarray([str(r) for r in record_ids], dtype=str)


def _ids_list(array) -> list:
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return [int(v) for v in array]
    return [str(v) for v in array]


# --- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceSpec:
    """How to read one record of an input, given its item (small, sent to Dask workers)."""

    kind: str  # "npz", "wfdb" or "ptbxl"
    path: str
    sampling_rate: float | None = None
    lead_names: tuple = ()
    units: str = "mV"
    column: str = ""  # PTB-XL: the table column with the record's path


@dataclass
class _Source:
    spec: _SourceSpec
    items: list
    record_ids: list


def _list_records(source, sampling_rate=None) -> _Source:
    """Enumerate the records of ``source`` without reading their signals."""
    from ecgsoup import io

    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder.")
    if path.is_file() and path.suffix == ".npz":
        return _list_npz(path, sampling_rate)
    if sampling_rate is not None:
        raise ValueError(
            "sampling_rate is only used for .npz input without an 'fs' entry; WFDB records carry "
            "their own rate in the header."
        )
    if io._is_ptbxl_root(path):
        table, column = io._ptbxl_table(path, 100, folds=None)
        items = [str(v) for v in table[column]]
        ids = [int(v) if isinstance(v, (int, np.integer)) else v for v in table["ecg_id"]]
        return _Source(_SourceSpec("ptbxl", str(path.resolve()), column=column), items, ids)
    stems = io._iter_paths(path)  # every *.hea below a folder, or one record
    if not stems:
        raise ValueError(f"{path}: no WFDB record (*.hea) in this folder.")
    names = [stem.name for stem in stems]
    if len(set(names)) < len(names):
        # Same record name in two sub-folders: the path below the root tells them apart.
        base = path if path.is_dir() else path.parent
        names = [stem.relative_to(base).as_posix() for stem in stems]
    return _Source(_SourceSpec("wfdb", str(path.resolve())), [str(s.resolve()) for s in stems], names)


def _list_npz(path: Path, sampling_rate) -> _Source:
    data = _npz_arrays(str(path.resolve()))
    if "x" not in data:
        raise ValueError(
            f"{path} has no 'x' array. An input .npz holds x (records, time, leads), fs and "
            f"lead_names (and optionally record_id); it has {sorted(data)}."
        )
    x = data["x"]
    if "lead_names" not in data:
        raise ValueError(f"{path} has no 'lead_names' array naming the leads of x's last axis.")
    lead_names = tuple(str(n) for n in data["lead_names"])
    if x.ndim != 3 or x.shape[2] != len(lead_names):
        hint = " It looks lead-major; store x as (records, time, leads)." if (
            x.ndim == 3 and x.shape[1] == len(lead_names)) else ""  # fmt: skip
        raise ValueError(
            f"{path}: x has shape {x.shape}, expected (records, time, {len(lead_names)} leads) "
            f"for lead_names {list(lead_names)}.{hint}"
        )
    fs = float(data["fs"]) if "fs" in data else None
    if fs is None and sampling_rate is None:
        raise ValueError(
            f"{path} has no 'fs' entry: pass the sampling rate of x in Hz (--sampling-rate / "
            "sampling_rate=). ecgsoup never guesses it."
        )
    if fs is not None and sampling_rate is not None and float(sampling_rate) != fs:
        raise ValueError(f"{path} says fs={fs:g} Hz but sampling_rate={sampling_rate!r} was given; drop one.")
    ids_key = next((k for k in ("record_id", "ecg_id") if k in data), None)
    ids = _ids_list(data[ids_key]) if ids_key else list(range(len(x)))
    if len(ids) != len(x) or len(set(ids)) != len(ids):
        raise ValueError(f"{path}: '{ids_key}' must hold {len(x)} distinct identifiers, one per record.")
    units = str(data["units"]) if "units" in data else "mV"  # irrelevant to the model: windows are z-scored
    spec = _SourceSpec("npz", str(path.resolve()), fs if fs is not None else float(sampling_rate), lead_names, units)
    return _Source(spec, list(range(len(x))), ids)


_NPZ_CACHE: OrderedDict = OrderedDict()
_NPZ_LOCK = threading.Lock()


def _npz_arrays(path: str) -> dict:
    """Arrays of an input ``.npz``, loaded once per process (a Dask worker reads many rows)."""
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _NPZ_LOCK:
        if key in _NPZ_CACHE:
            return _NPZ_CACHE[key]
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read the .npz ({type(exc).__name__}: {exc}).") from None
    with _NPZ_LOCK:
        _NPZ_CACHE[key] = arrays
        while len(_NPZ_CACHE) > 2:
            _NPZ_CACHE.popitem(last=False)
    return arrays


def _read_item(spec: _SourceSpec, item, record_id):
    """One :class:`ecgsoup.io.ECGRecord`; raises ``RecordError`` for a bad file."""
    from ecgsoup.io import ECGRecord, _TO_MV, read_wfdb

    if spec.kind == "npz":
        x = _npz_arrays(spec.path)["x"][item]
        factor = _TO_MV.get(spec.units.strip().lower(), 1.0)
        signal = (x.astype(np.float64) * factor).astype(np.float32)
        return ECGRecord(record_id, signal, spec.sampling_rate, spec.lead_names, "mV", {"path": spec.path})
    if spec.kind == "ptbxl":
        record = read_wfdb(Path(spec.path) / item)
    else:
        record = read_wfdb(item)
    record.record_id = record_id
    return record


# --- the model --------------------------------------------------------------------------


def _normalise_model(model):
    """A model argument every process resolves the same way (absolute paths, random alias)."""
    from ecgsoup.models import STMEMEncoder

    if isinstance(model, STMEMEncoder):
        return model
    name = os.fspath(model)
    name = _RANDOM_ALIAS.get(name, name)
    if name == "default" or name.startswith("random:"):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _model_config(model):
    from ecgsoup.models import STMEMEncoder, get_config, load_config

    if isinstance(model, STMEMEncoder):
        return model.config
    if model.startswith("random:"):
        return get_config(model.partition(":")[2])
    return load_config(model)


_EMBEDDERS: OrderedDict = OrderedDict()
_EMBEDDERS_LOCK = threading.Lock()


def _fitted_embedder(model, settings: dict, fingerprint: str | None = None):
    """A fitted ``LayerwiseEmbedder``, loaded once per process and reused for every block.

    On a Dask worker this is the "load the model once" cache.  ``fingerprint``
    (the sha256 the client saw) is checked, so a worker that finds other
    weights at the same path fails loudly instead of mixing models in a store.
    """
    from ecgsoup.embedding import LayerwiseEmbedder
    from ecgsoup.models import STMEMEncoder

    if isinstance(model, STMEMEncoder):
        # An object has no path to key on: only its (client-computed) fingerprint identifies it.
        key = None if fingerprint is None else ("encoder", fingerprint, tuple(sorted(settings.items())))
    else:
        key = (model, _files_signature(model), tuple(sorted(settings.items())))
    with _EMBEDDERS_LOCK:
        cached = _EMBEDDERS.get(key) if key is not None else None
    if cached is not None and fingerprint in (None, cached.fingerprint_):
        return cached
    config = _model_config(model)
    embedder = LayerwiseEmbedder(model=model, include_norm=True, **settings)
    # Fitting only loads the model and checks the shape: one zero window suffices.
    embedder.fit(np.zeros((1, config.n_leads, config.n_samples), np.float32))
    if fingerprint is not None and embedder.fingerprint_ != fingerprint:
        raise StoreError(
            f"The model {model!r} loaded here has sha256 {embedder.fingerprint_[:12]}…, but the store "
            f"is being written with {fingerprint[:12]}…: every process must see the same weights "
            "at that path."
        )
    if key is None:  # equal fingerprints mean equal weights: later blocks may reuse it
        key = ("encoder", embedder.fingerprint_, tuple(sorted(settings.items())))
    with _EMBEDDERS_LOCK:
        _EMBEDDERS[key] = embedder
        _EMBEDDERS.move_to_end(key)
        while len(_EMBEDDERS) > 2:
            _EMBEDDERS.popitem(last=False)
    return embedder


def _files_signature(model: str) -> tuple:
    """(name, size, mtime) of a model path's files, so rewritten weights are reloaded."""
    path = Path(model)
    if not path.exists():
        return ()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


# --- one block --------------------------------------------------------------------------


def _prepare(record, config, lead_map, pad) -> np.ndarray:
    """One record -> model-ready ``(n_leads, T)`` float32 (its own rate and leads)."""
    from ecgsoup.leads import canonical_lead_name
    from ecgsoup.preprocessing import ECGPreprocessor

    mapped = set((lead_map or {}).values())
    # Non-ECG channels (Frank vx/vy/vz, respiration ...) are irrelevant to the model.
    keep = [i for i, n in enumerate(record.lead_names) if canonical_lead_name(n) is not None or n in mapped]
    if not keep:
        raise ValueError(f"no standard ECG lead among {list(record.lead_names)}; map them with lead_map.")
    names = [record.lead_names[i] for i in keep]
    prep = ECGPreprocessor(sampling_rate=record.fs, lead_names=names, lead_map=lead_map, model=config, pad=pad)
    flat = prep.fit_transform(record.signal[None, :, keep])
    return flat.reshape(config.n_leads, -1)


def _embed_block(spec, items, record_ids, positions, model, settings, fingerprint, lead_map, pad):
    """Read, preprocess and embed one block of records; runs in-process or on a Dask worker.

    Returns
    -------
    positions : ndarray of int
        Store rows of the block, as given.
    pooled : ndarray of shape (len(positions), n_layers, dim), float32
        Zeros for failed records.
    status : ndarray of int8
    errors : list of str
        ``""`` for embedded records, the reason for failed ones.
    """
    from ecgsoup.io import RecordError

    embedder = _fitted_embedder(model, settings, fingerprint)
    config = embedder.config_
    n = len(positions)
    pooled = np.zeros((n, config.n_layers, config.width), np.float32)
    status = np.full(n, FAILED, np.int8)
    errors = [""] * n
    ready: dict[int, list] = {}
    for i, (item, record_id) in enumerate(zip(items, record_ids)):
        try:
            x = _prepare(_read_item(spec, item, record_id), config, lead_map, pad)
        except (RecordError, ValueError, OSError) as exc:
            errors[i] = _single_record_message(exc)
            continue
        ready.setdefault(x.shape[1], []).append((i, x))
    # Records of equal length go through the embedder together (its batches).
    for length in sorted(ready):
        rows = [i for i, _ in ready[length]]
        out = embedder.transform(np.stack([x for _, x in ready[length]]))
        pooled[rows] = out[:, : config.n_layers * config.width].reshape(len(rows), config.n_layers, config.width)
        status[rows] = DONE
    return np.asarray(positions), pooled, status, errors


def _single_record_message(exc) -> str:
    """The error of a one-record batch, without the batch bookkeeping ("row 0 of X", "1 record(s)")."""
    message = str(exc).strip() or type(exc).__name__
    message = re.sub(r"^Record 0 \(row 0 of X\) ", "The record ", message)
    return re.sub(r"; 1 record\(s\) are affected in all", "", message)


# --- writing a store ----------------------------------------------------------------------


@dataclass
class EmbedSummary:
    """What one :func:`embed_to_store` run did.

    Attributes
    ----------
    store : str
        Path of the store.
    n_records : int
        Records in the input (and rows in the store).
    n_done : int
        Records embedded so far (this run and earlier ones).
    n_failed : int
        Records that could not be embedded (listed in ``errors``).
    n_pending : int
        Records left for a later run (only after ``limit``).
    n_computed : int
        Records this run attempted (embedded or failed).
    n_reused : int
        Records already embedded by an earlier run, skipped now.
    seconds : float
        Wall time of this run's embedding.
    errors : list of (record_id, message)
        Failed records of the whole store.
    """

    store: str
    n_records: int
    n_done: int
    n_failed: int
    n_pending: int
    n_computed: int
    n_reused: int
    seconds: float
    errors: list = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else float("nan")


def embed_to_store(
    source,
    store,
    *,
    model="default",
    precision="float32",
    batch_size=32,
    device="cpu",
    window_stride=None,
    lead_map=None,
    sampling_rate=None,
    pad="error",
    format=None,
    chunk_size=DEFAULT_CHUNK_SIZE,
    limit=None,
    overwrite=False,
    client=None,
    verbose=0,
) -> EmbedSummary:
    """Embed every record of ``source`` into an on-disk store; resumes an existing one.

    Parameters
    ----------
    source : str or Path
        A folder of WFDB / PhysioNet-Challenge records (searched recursively),
        a single record, a PTB-XL root (its 100 Hz records, ``ecg_id`` as
        identifiers), or an ``.npz`` holding ``x`` (records, time, leads),
        ``fs``, ``lead_names`` and optionally ``record_id`` (or ``ecg_id``)
        and ``units``.
    store : str or Path
        Output: ``*.zarr`` (a directory; needs ``zarr``) or ``*.npz``.  If it
        exists, the run resumes it: only records not yet embedded are computed.
    model : str, path or STMEMEncoder, default="default"
        ``"default"`` (the bundled model), a model directory or ST-MEM
        ``.pth``, ``"random"`` (an untrained ``ecgsoup-100hz-tiny``, seed 0),
        ``"random:<config>"``, or an encoder object.
    precision : {"float32", "bfloat16"}, default="float32"
        Forward-pass precision; see :class:`~ecgsoup.embedding.LayerwiseEmbedder`.
    batch_size : int, default=32
        Windows per forward pass.
    device : str, default="cpu"
        Torch device name of the encoder (on each Dask worker too).
    window_stride : int, default=None
        Stride of the windows over long records (``None``: half a window).
    lead_map : dict, default=None
        ``{model lead: data lead}`` for leads stored under other names.
    sampling_rate : float, default=None
        Sampling rate of an ``.npz`` input that has no ``fs`` entry.
    pad : {"error", "zeros", "edge"}, default="error"
        Records shorter than one model window are failed (``"error"``) or padded.
    format : {"zarr", "npz"}, default=None
        Store format; ``None`` reads it from the extension of ``store``.
    chunk_size : int, default=256
        Records per block: the unit of work, of memory, of a Dask task and of
        resumption (and the zarr chunk length).
    limit : int, default=None
        Attempt at most this many records in this run, then stop (resumable).
    overwrite : bool, default=False
        Delete an existing store at ``store`` first instead of resuming it.
    client : dask.distributed.Client, default=None
        Shard the blocks across this cluster's workers (see
        :mod:`ecgsoup.distributed`); ``None`` runs in this process.
    verbose : int, default=0
        ``> 0`` shows a progress bar over records (on stderr).

    Returns
    -------
    summary : EmbedSummary

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    ValueError
        If ``source`` cannot be listed (e.g. an ``.npz`` without ``fs``), or
        the model cannot be loaded (``WeightsError``).
    StoreError
        If ``store`` exists but was written from another input or with other
        settings (model, precision, stride, lead map, padding).

    Warns
    -----
    SkippedRecordWarning
        Once per record that cannot be embedded; the record is marked failed.

    Examples
    --------
    >>> from ecgsoup.store import embed_to_store, open_store           # doctest: +SKIP
    >>> embed_to_store("ptbxl/", "ptbxl.zarr")                         # doctest: +SKIP
    >>> X, record_ids, attrs, errors = open_store("ptbxl.zarr")        # doctest: +SKIP
    """
    from ecgsoup import __version__

    if chunk_size is None or int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size!r}; expected a positive number of records.")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit={limit!r}; expected a non-negative number of records.")
    if pad not in ("error", "zeros", "edge"):
        raise ValueError(f"pad={pad!r}; expected 'error', 'zeros' or 'edge'.")
    store = Path(store).expanduser()
    kind = _store_kind(store, format)
    listing = _list_records(source, sampling_rate)
    model = _normalise_model(model)
    settings = dict(batch_size=int(batch_size), device=str(device), precision=precision,
                    window_stride=window_stride)  # fmt: skip
    embedder = _fitted_embedder(model, settings)
    config = embedder.config_
    attrs = {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "ecgsoup_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(Path(source).expanduser().resolve()),
        "source_kind": listing.spec.kind,
        "model": model if isinstance(model, str) else f"<STMEMEncoder {config.name}>",
        "model_name": config.name,
        "model_sha256": embedder.fingerprint_,
        "model_config": _jsonable(config.to_dict()),
        "model_metadata": _jsonable(getattr(embedder.model_, "metadata", {})),
        "pretrained": bool(getattr(embedder.model_, "metadata", {}).get("pretrained", True)),
        "precision": precision,
        "window_stride": int(embedder.window_stride_),
        "lead_map": dict(lead_map or {}),
        "pad": pad,
        "sampling_rate_override": sampling_rate,
        "n_layers": int(config.n_layers),
        "dim": int(config.width),
        "layout": "embeddings (n, n_layers, dim); open_store() gives [h_0 | ... | h_L | norm_weight | norm_bias]",
    }
    if overwrite and store.exists():
        _remove_store(store)
    backend = _open_backend(store, mode="a", kind=kind)
    if store.exists():
        _check_resume(store, backend, attrs, listing.record_ids)
    else:
        norm = embedder.transform(np.zeros((1, config.n_leads, config.n_samples), np.float32))[0]
        start = config.n_layers * config.width
        backend.create(listing.record_ids, config.n_layers, config.width, int(chunk_size), attrs,
                       norm[start : start + config.width], norm[start + config.width :])  # fmt: skip
    status = np.asarray(backend.read("status"))
    block_rows = _blocks(status, int(chunk_size), limit)
    n_todo = int(sum(len(rows) for rows in block_rows))
    n_reused = int((status == DONE).sum())
    tasks = [
        (listing.spec, [listing.items[i] for i in rows], [listing.record_ids[i] for i in rows], rows)
        for rows in block_rows
    ]
    started = time.perf_counter()
    from tqdm.auto import tqdm

    with tqdm(total=n_todo, disable=not verbose, desc="embedding", unit="record") as bar:

        def write(result):
            positions, pooled, block_status, block_errors = result
            backend.write(positions, pooled, block_status, block_errors)
            for position, message in zip(positions, block_errors):
                if message:
                    with tqdm.external_write_mode():  # the message on its own line, not in the bar
                        warnings.warn(
                            f"Skipped record {listing.record_ids[position]}: {message}",
                            SkippedRecordWarning,
                            stacklevel=3,
                        )
            bar.update(len(positions))

        common = dict(model=model, settings=settings, fingerprint=embedder.fingerprint_,
                      lead_map=lead_map, pad=pad)  # fmt: skip
        if client is None:
            for spec, items, ids, rows in tasks:
                write(_embed_block(spec, items, ids, rows, **common))
        else:
            from ecgsoup.distributed import run_blocks

            run_blocks(client, tasks, write, **common)
    seconds = time.perf_counter() - started
    backend.flush()
    status = np.asarray(backend.read("status"))
    messages = backend.read("error")
    failed = np.flatnonzero(status == FAILED)
    return EmbedSummary(
        store=str(store),
        n_records=len(status),
        n_done=int((status == DONE).sum()),
        n_failed=int(failed.size),
        n_pending=int((status == PENDING).sum()),
        n_computed=n_todo,
        n_reused=n_reused,
        seconds=seconds,
        errors=[(listing.record_ids[i], str(messages[i])) for i in failed],
    )


def _blocks(status: np.ndarray, chunk_size: int, limit) -> list[np.ndarray]:
    """Rows to compute, grouped by aligned block (one zarr chunk each), at most ``limit`` rows."""
    todo = np.flatnonzero(status != DONE)
    if limit is not None:
        todo = todo[: int(limit)]
    if todo.size == 0:
        return []
    block_of = todo // chunk_size
    cuts = np.flatnonzero(np.diff(block_of)) + 1
    return np.split(todo, cuts)


def _check_resume(store: Path, backend, attrs: dict, record_ids: list) -> None:
    old = backend.attrs
    different = [
        f"{key}: store has {old.get(key)!r}, this run {attrs[key]!r}"
        for key in _RESUME_KEYS
        if _jsonable(old.get(key)) != _jsonable(attrs[key])
    ]
    if different:
        raise StoreError(
            f"{store} was written with other settings ({'; '.join(different)}). Resume with the "
            "same settings, write to another path, or pass overwrite=True (--overwrite)."
        )
    stored = backend.record_ids()
    if stored != _ids_list(_ids_array(record_ids)):
        raise StoreError(
            f"{store} holds {len(stored)} records of another input listing (this input has "
            f"{len(record_ids)}, or in another order). Write to another path, or pass "
            "overwrite=True (--overwrite) to start over."
        )


def _remove_store(store: Path) -> None:
    if store.is_dir():
        if not (store / "zarr.json").exists():
            raise StoreError(f"Refusing to delete {store}: it is a folder but not a zarr store.")
        shutil.rmtree(store)
    else:
        store.unlink()


def _jsonable(value):
    """JSON round trip (tuples -> lists, numpy scalars -> numbers), as attrs are stored."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    return str(value)
