"""Embedding stores: the layer-wise embeddings of many ECGs, on disk, resumable.

:func:`embed_to_store` reads every record of an input (a WFDB/Challenge
folder, a PTB-XL root, or an ``.npz`` of arrays), brings each one into the
model's contract with :class:`~ecgsoup.preprocessing.ECGPreprocessor` (using
the record's *own* sampling rate and lead names), and embeds all layers with
:class:`~ecgsoup.embedding.LayerwiseEmbedder`.  Records longer than the model
window are windowed and averaged by the embedder.  :func:`open_store` reads the
result back as a 2-D array with its :class:`~ecgsoup.layers.LayerSpec`, ready
for ``LayerSelector``, ``PPA``, ``PMA`` or any scikit-learn estimator.

Store layout (zarr v3 group, or the same names as arrays in one ``.npz``)::

    embeddings   float32 (n_records, n_features)      pooled h_0 .. h_L per record, side by side
    record_id    int64 or str (n_records,)            in input order
    status       int8 (n_records,)                    0 pending, 1 done, 2 failed
    error        str (n_records,)                     why a record failed ("" otherwise)
    quality      str (n_records,)                     why a signal does not look like an ECG
                                                      ("" otherwise; absent until a record is noted)
    derived_leads str (n_records,)                    the leads computed from I and II, e.g.
                                                      "III, aVR, aVL, aVF" ("" otherwise; absent
                                                      until a record has one)
    attrs        format, the layer specification (layer names, widths, streams,
                 readout, model sha256), model family, contract and card, ecgsoup
                 version, precision, window stride, input settings, poor_signals

**Resumable.** The list of records is fixed when the store is created; every
run computes only the records whose status is not "done" (failed ones are
retried: the file may have been fixed), one block of ``chunk_size`` records at
a time, and marks a block done only after its embeddings are written.  A run
that is killed, or stopped with ``limit``, loses at most one block (see
:data:`DEFAULT_CHUNK_SIZE`); one stopped with Ctrl-C saves every finished
block and raises :class:`EmbedInterrupted`.  The ecgsoup version, the model's
sha256 and every setting that changes the numbers must match to resume.
Memory is O(``chunk_size``) for zarr; an ``.npz`` store is held in memory and
rewritten atomically (at most every few seconds, and always at the end), so
it suits up to some tens of thousands of records.

**Safe.** A store is created complete or not at all (built in a temporary
sibling, then renamed into place), and its attributes carry the marker
``format="ecgsoup-embeddings"``.  ``overwrite`` removes only a path that
carries that marker, never the input, and never anything else.  A writer holds
an inter-process lock (:mod:`filelock`, the file ``<store>.lock`` with the
holder's pid, host and command in ``<store>.lock.json``) for the whole run: a
second writer on the same store is refused at once, naming the first.

**Verified.** Opening or resuming a store reads every chunk and checks the
arrays against each other (:mod:`ecgsoup.store_check`): records whose chunk
is missing or unreadable, or whose status contradicts their embeddings, are
named in a :class:`StoreDamageWarning`, left out of :func:`open_store`, and
re-embedded by the next run; lost record ids are restored from the input.

**Bad records** (unreadable file, NaN samples, missing leads, too short) are
never dropped silently: each one is reported with a
:class:`SkippedRecordWarning`, marked failed in ``status`` with its message
in ``error``, and listed by :func:`open_store` in ``errors``.
"""

from __future__ import annotations

import dataclasses

import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
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

from ecgsoup.store_check import NOTE_COLUMNS, StoreDamageWarning, check_store, describe_rows, repair_store, resume_ids

__all__ = [
    "StoreError",
    "StoreLockedError",
    "EmbedInterrupted",
    "SkippedRecordWarning",
    "StoreDamageWarning",
    "StoredEmbeddings",
    "EmbedSummary",
    "embed_to_store",
    "open_store",
    "is_store",
    "run_blocks",
    "DEFAULT_CHUNK_SIZE",
]

STORE_FORMAT = "ecgsoup-embeddings"
STORE_FORMAT_VERSION = 2
PENDING, DONE, FAILED = 0, 1, 2
#: Records per block: the unit of work, of writing and of resumption.  A block is marked done
#: only once its embeddings are on disk, so a killed run loses at most the block in flight.
#: Measured here (ecgsoup embed, the bundled model, float32, LUDB 10-s records): about 7
#: records/s on this project's 2-vCPU machine while a pretraining job shares it, 30-50
#: records/s on an idle laptop CPU.  64 records are therefore 1-2 s of work on an idle CPU and
#: about 10 s on a busy one; even at 1 record/s (records of minutes, or a slow machine) a kill
#: loses about a minute.  The former default of 256 held every record of a 200-record run in
#: one block, so a kill lost the whole run.  Smaller blocks cost one zarr chunk file per block
#: and array, and nothing measurable in compute (batches are ``batch_size`` windows anyway).
DEFAULT_CHUNK_SIZE = 64
_RANDOM_ALIAS = {"random": "random:ecgsoup-100hz-tiny"}
# Settings that change the stored numbers: a resumed run must match them.
_RESUME_KEYS = ("ecgsoup_version", "model_sha256", "precision", "window_stride", "lead_map", "pad",
                "sampling_rate_override", "ptbxl_rate", "derived_leads", "poor_signals")  # fmt: skip
# What a store records when limb leads were computed (None when they were not: older stores match).
_DERIVED_LEADS_RULE = "III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2, where a record lacks them"
# What a store written before a setting existed was written with.
_RESUME_DEFAULTS = {"poor_signals": "flag"}
# What every store holds, checked as one unit when a store is opened.
_REQUIRED_ARRAYS = ("embeddings", "record_id", "status", "error")
_REQUIRED_ATTRS = ("format", "format_version", "ecgsoup_version", "model_sha256", "n_layers", "n_features",
                   "layer_spec", "precision", "window_stride", "pad")  # fmt: skip
# Stores of format version 1 held the final LayerNorm as two arrays and 3-D embeddings.
_REQUIRED_V1 = (("embeddings", "record_id", "status", "error", "norm_weight", "norm_bias"),
                ("format", "format_version", "ecgsoup_version", "model_sha256", "n_layers", "dim",
                 "precision", "window_stride", "pad"))  # fmt: skip
# An .npz store is rewritten whole; do it at most this often (and always at the end).
_NPZ_FLUSH_SECONDS = 10.0


class StoreError(ValueError):
    """A store cannot be used: unknown format, or written with other settings or input."""


class StoreLockedError(StoreError):
    """Another process is writing the store (the message names it)."""


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`embed_to_store`: every finished block is saved; run again to resume.

    Attributes
    ----------
    store : str
    n_saved : int
        Records embedded in the store (this run and earlier ones).
    n_records : int
        Records in the input.
    """

    def __init__(self, store, n_saved, n_records):
        self.store, self.n_saved, self.n_records = str(store), int(n_saved), int(n_records)
        super().__init__(
            f"interrupted: {self.n_saved} of {self.n_records} records saved; run the same command "
            "again to resume"
        )


class SkippedRecordWarning(UserWarning):
    """A record could not be embedded; it is marked failed in the store, with the reason."""


# --- reading a store ------------------------------------------------------------------


class StoredEmbeddings(NamedTuple):
    """What :func:`open_store` returns; unpacks as ``X, record_ids, attrs, errors``.

    Attributes
    ----------
    X : ndarray of shape (n_done, n_features), float32
        Embedded records only, ``[h_0 | ... | h_L]`` as ``layer_spec``
        describes: feed it to ``PPA(layer_spec=stored.layer_spec)``,
        ``LayerSelector``, ``PMA`` or :func:`ecgsoup.evaluate.layer_probe`.
    record_ids : list
        Identifier of each row of ``X``.
    attrs : dict
        The store's attributes (model config, ``model_sha256``,
        ``ecgsoup_version``, ``precision``, ``n_layers``, ``n_features``,
        ``layer_spec``, ...), the
        counts ``n_records``, ``n_done``, ``n_failed``, ``n_pending``, and
        the per-record notes: ``quality_notes`` (``{record_id: note}`` of
        signals that do not look like an ECG) and
        ``records_with_derived_leads`` (``{record_id: ["III", "aVR", ...]}``
        of records whose limb leads were computed from I and II; the rule
        is in ``derived_leads``).
    errors : pandas.DataFrame
        ``record_id``, ``message`` of every record that failed.

    The property ``layer_spec`` (a :class:`~ecgsoup.layers.LayerSpec`) says
    what the columns of ``X`` are: layer names and widths, the model's
    readout, and its sha256 as model id.
    """

    X: np.ndarray
    record_ids: list
    attrs: dict
    errors: pd.DataFrame

    @property
    def layer_spec(self):
        """What the columns of ``X`` are (built from ``attrs["layer_spec"]``)."""
        from ecgsoup.layers import LayerSpec

        return LayerSpec.from_dict(self.attrs["layer_spec"])

    def __repr__(self) -> str:
        a = self.attrs
        model = a.get("model_name") or (a.get("config") or {}).get("name") or "?"
        return (
            f"StoredEmbeddings({a.get('n_done', len(self.record_ids))} of {a.get('n_records', '?')} records "
            f"embedded, {a.get('n_failed', len(self.errors))} failed; {a.get('n_layers', '?')} layers, "
            f"{a.get('n_features', '?')} columns; model {model}, sha256 {str(a.get('model_sha256', '?'))[:12]})"
        )

    def feature_names(self) -> np.ndarray:
        """Column names of ``X``, tagged with the model: ``13fb9067:layer03_dim0127``.

        The tag (the first 8 hex digits of the weights' sha256) lets a fusion
        fitted on one model's frame refuse another model's.
        """
        tag = self.layer_spec.tag
        return np.asarray([f"{tag}:{name}" for name in self.layer_spec.feature_names()], dtype=object)

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
    if path.is_file():  # an .npz store, whatever its name (format="npz")
        try:
            with np.load(path, allow_pickle=False) as data:  # lazy: lists members only
                return "attrs" in data.files and json.loads(str(data["attrs"])).get("format") == STORE_FORMAT
        except (OSError, ValueError, EOFError, AttributeError):  # AttributeError: a plain .npy
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
    >>> stored = open_store("ptbxl.zarr")                      # doctest: +SKIP
    >>> from ecgsoup.fusion import PPA                          # doctest: +SKIP
    >>> PPA(layer_spec=stored.layer_spec).fit_transform(stored.X).shape  # doctest: +SKIP
    (21799, 192)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such embedding store.")
    backend = _open_backend(path, mode="r")
    check = _verified(path, backend)
    status, record_ids, embeddings = check.status, check.record_ids, check.embeddings
    done = np.flatnonzero(status == DONE)
    spec = _layer_spec_of(backend)
    X = np.ascontiguousarray(np.asarray(embeddings).reshape(len(done), -1), dtype=np.float32)
    failed = np.flatnonzero(status == FAILED)
    messages = check.messages
    errors = pd.DataFrame(
        {"record_id": [record_ids[i] for i in failed], "message": [str(messages[i]) for i in failed]}
    )
    attrs = dict(backend.attrs)
    counts = dict(
        n_records=len(status),
        n_done=int(done.size),
        n_failed=int(failed.size),
        n_pending=int((status == PENDING).sum()) - len(check.damaged),
        n_damaged=len(check.damaged),
    )
    attrs.update(counts)
    notes = _notes(backend, "quality", status == DONE)
    attrs["quality_notes"] = {record_ids[i]: note for i, note in notes.items()}
    attrs["n_flagged"] = len(notes)
    derived = _notes(backend, "derived_leads", status == DONE)
    attrs["records_with_derived_leads"] = {record_ids[i]: leads.split(", ") for i, leads in derived.items()}
    if check.damaged:
        warnings.warn(check.damage_message(path), StoreDamageWarning, stacklevel=2)
    if counts["n_pending"]:
        warnings.warn(
            f"{path} is incomplete: {counts['n_pending']} of {counts['n_records']} records are not "
            "embedded yet (an interrupted or --limit run). Run `ecgsoup embed` again with the same "
            "input and --out to finish; only the missing records are computed.",
            stacklevel=2,
        )
    attrs["layer_spec"] = spec.to_dict()  # version-1 stores: rebuilt from their norm arrays
    return StoredEmbeddings(X, [record_ids[i] for i in done], attrs, errors)


def _layer_spec_of(backend):
    """The store's layer specification (rebuilt from the norm arrays of version-1 stores)."""
    from ecgsoup.layers import LayerInfo, LayerSpec, Readout

    attrs = backend.attrs
    if attrs.get("format_version") == 1:
        n_layers, dim = int(attrs["n_layers"]), int(attrs["dim"])
        readout = Readout("layernorm", np.asarray(backend.read("norm_weight"), np.float32),
                          np.asarray(backend.read("norm_bias"), np.float32), 1e-5)  # fmt: skip
        layers = tuple(LayerInfo(f"layer{i:02d}", dim) for i in range(n_layers))
        return LayerSpec(str(attrs["model_sha256"]), layers, readout, str(attrs.get("model_name", "")))
    return LayerSpec.from_dict(attrs["layer_spec"])


def _notes(backend, name, rows) -> dict:
    """``{row: note}`` of the ``rows`` (a mask) with a note in the per-record column ``name``."""
    if name not in backend.names():
        return {}
    notes = backend.read(name)
    return {int(i): str(notes[i]) for i in np.flatnonzero(rows) if str(notes[i])}


def _verified(path: Path, backend):
    """Every chunk of the store read and checked (:mod:`ecgsoup.store_check`); whole-store damage refused."""
    check = check_store(backend)
    if check.problems or check.id_problems:
        raise StoreError(
            f"{path} is a damaged ecgsoup store ({'; '.join(check.id_problems + check.problems)}). Run `ecgsoup embed` again "
            "with the same input and --out to repair it, or start it over with overwrite=True (--overwrite)."
        )
    return check


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
        _check_complete(path, backend)
    return backend


def _check_complete(path: Path, backend) -> None:
    """The attributes and arrays of a store, checked together: all there, and of one shape."""
    attrs = backend.attrs
    arrays, required = _REQUIRED_V1 if attrs.get("format_version") == 1 else (_REQUIRED_ARRAYS, _REQUIRED_ATTRS)
    problems = [f"attribute {key!r} is missing" for key in required if key not in attrs]
    present = backend.names()
    problems += [f"array {name!r} is missing" for name in arrays if name not in present]
    if not problems:
        n = backend.shape("record_id")[0]
        for name in ("status", "error", "embeddings"):
            if backend.shape(name)[0] != n:
                problems.append(f"{name!r} has {backend.shape(name)[0]} rows for {n} records")
        if attrs.get("format_version") == 1:
            expected = (n, attrs["n_layers"], attrs["dim"])
        else:
            expected = (n, attrs["n_features"])
        if tuple(backend.shape("embeddings")) != expected:
            problems.append(f"'embeddings' has shape {tuple(backend.shape('embeddings'))}, not {expected}")
    if problems:
        raise StoreError(
            f"{path} is a damaged ecgsoup store ({'; '.join(problems)}). Start it over with "
            "overwrite=True (--overwrite)."
        )


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

    def names(self) -> set:
        return set(self.group.array_keys())

    def shape(self, name) -> tuple:
        return tuple(self.group[name].shape)

    def create(self, record_ids, n_features, chunk, attrs) -> None:
        """Build the whole store in a temporary sibling folder, then rename it into place."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.creating-", dir=self.path.parent))
        try:
            self._build(tmp, record_ids, n_features, chunk, attrs)
            os.rename(tmp, self.path)  # atomic: the store appears complete, or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.group = self.zarr.open_group(str(self.path), mode="r+")

    def _build(self, where, record_ids, n_features, chunk, attrs) -> None:
        from zarr.dtype import VariableLengthUTF8

        zarr, n = self.zarr, len(record_ids)
        group = zarr.open_group(str(where), mode="w")
        chunk = max(1, min(chunk, n))
        group.create_array("embeddings", shape=(n, n_features), chunks=(chunk, n_features),
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
        group.attrs.update(attrs)  # one write of zarr.json: every attribute together

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

    def write(self, positions, embeddings, status, errors, notes=None) -> None:
        # Embeddings first, status last: a run killed in between recomputes the rows.
        positions = np.asarray(positions)
        if positions.size == 0:
            return
        start, stop = int(positions.min()), int(positions.max()) + 1
        columns = [(self._note_column(name, values), values) for name, values in (notes or {}).items()]
        columns = [(column, np.asarray(values, dtype=object)) for column, values in columns if column is not None]
        if np.array_equal(positions, np.arange(start, stop)):
            self.group["embeddings"][start:stop] = embeddings
            self.group["error"][start:stop] = np.asarray(errors, dtype=object)
            for column, values in columns:
                column[start:stop] = values
            self.group["status"][start:stop] = status
        else:
            self.group["embeddings"].set_orthogonal_selection((positions,), embeddings)
            self.group["error"].set_orthogonal_selection((positions,), np.asarray(errors, dtype=object))
            for column, values in columns:
                column.set_orthogonal_selection((positions,), values)
            self.group["status"].set_orthogonal_selection((positions,), status)

    def _note_column(self, name, values):
        """The per-record notes array ``name``, created at its first note (older stores lack it)."""
        if name not in self.group.array_keys():
            if not any(values):
                return None
            from zarr.dtype import VariableLengthUTF8

            status = self.group["status"]
            self.group.create_array(name, shape=status.shape, chunks=status.chunks,
                                    dtype=VariableLengthUTF8(), fill_value="")  # fmt: skip
        return self.group[name]

    def flush(self, force=True) -> None:
        """Rows are on disk as soon as they are written."""


class _NpzStore:
    """One ``.npz``, held in memory and rewritten atomically after every block."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self.arrays: dict = {}
        self._attrs: dict = {}
        self._dirty = False
        self._flushed_at = 0.0
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

    def names(self) -> set:
        return set(self.arrays)

    def shape(self, name) -> tuple:
        return tuple(self.arrays[name].shape)

    def create(self, record_ids, n_features, chunk, attrs) -> None:
        n = len(record_ids)
        self.arrays = {
            "embeddings": np.zeros((n, n_features), np.float32),
            "record_id": _ids_array(record_ids),
            "status": np.full(n, PENDING, np.int8),
            "error": np.full(n, "", dtype=object),
        }
        self._attrs = dict(attrs)
        self.flush()

    def read(self, name) -> np.ndarray:
        return self.arrays[name]

    def read_rows(self, name, rows) -> np.ndarray:
        return self.arrays[name][rows]

    def record_ids(self) -> list:
        return _ids_list(self.arrays["record_id"])

    def write(self, positions, embeddings, status, errors, notes=None) -> None:
        positions = np.asarray(positions)
        self.arrays["embeddings"][positions] = embeddings
        self.arrays["status"][positions] = status
        errors_column = self.arrays["error"].astype(object)
        errors_column[positions] = errors
        self.arrays["error"] = errors_column
        for name, values in (notes or {}).items():
            if name not in self.arrays and not any(values):
                continue
            # object, not fixed-width unicode: a longer note would be cut to the longest one so far
            column = self.arrays.get(name, np.full(len(self.arrays["status"]), "", dtype=object)).astype(object)
            column[positions] = values
            self.arrays[name] = column
        self._dirty = True
        self.flush(force=False)

    def flush(self, force=True) -> None:
        """Rewrite the file atomically; unless ``force``, only if the last write is old enough."""
        if not force and time.monotonic() - self._flushed_at < _NPZ_FLUSH_SECONDS:
            return
        arrays = dict(self.arrays)
        # Plain unicode arrays: an npz must load without allow_pickle.
        arrays["error"] = np.asarray([str(e) for e in arrays["error"]], dtype=str)
        for name in NOTE_COLUMNS:
            if name in arrays:
                arrays[name] = np.asarray([str(e) for e in arrays[name]], dtype=str)
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
        self._dirty = False
        self._flushed_at = time.monotonic()


def _ids_array(record_ids) -> np.ndarray:
    if all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in record_ids):
        return np.asarray(record_ids, dtype=np.int64)
    return np.asarray([str(r) for r in record_ids], dtype=str)


def _ids_list(array) -> list:
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return [int(v) for v in array]
    return [str(v) for v in array]


# --- the model --------------------------------------------------------------------------


def _normalise_model(model):
    """A model argument every process resolves the same way (absolute paths, random alias)."""
    from ecgsoup.backbones import Backbone
    from ecgsoup.backbones._registry import families

    if isinstance(model, Backbone):
        return model
    name = os.fspath(model)
    name = _RANDOM_ALIAS.get(name, name)
    if name == "default" or name.startswith("random:"):
        return name
    family, sep, rest = name.partition(":")
    if sep and family in families():
        path = Path(rest).expanduser()
        return f"{family}:{path.resolve()}" if path.exists() else name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _model_contract(model):
    from ecgsoup.backbones import resolve_contract

    return resolve_contract(model)


_EMBEDDERS: OrderedDict = OrderedDict()
_EMBEDDERS_LOCK = threading.Lock()


def _fitted_embedder(model, settings: dict, fingerprint: str | None = None):
    """A fitted ``LayerwiseEmbedder``, loaded once per process and reused for every block.

    On a Dask worker this is the "load the model once" cache.  ``fingerprint``
    (the sha256 the client saw) is checked, so a worker that finds other
    weights at the same path fails loudly instead of mixing models in a store.
    """
    from ecgsoup.backbones import Backbone
    from ecgsoup.embedding import LayerwiseEmbedder

    if isinstance(model, Backbone):
        # An object has no path to key on: only its (client-computed) fingerprint identifies it.
        key = None if fingerprint is None else ("encoder", fingerprint, tuple(sorted(settings.items())))
    else:
        key = (model, _files_signature(model), tuple(sorted(settings.items())))
    with _EMBEDDERS_LOCK:
        cached = _EMBEDDERS.get(key) if key is not None else None
    if cached is not None and fingerprint in (None, cached.fingerprint_):
        return cached
    contract = _model_contract(model)
    embedder = LayerwiseEmbedder(model=model, **settings)
    # Fitting only loads the model and checks the shape: one zero window suffices.
    embedder.fit(np.zeros((1, contract.n_leads, contract.window), np.float32))
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
    family, sep, rest = model.partition(":")
    path = Path(rest if sep and len(family) > 1 else model)
    if not path.exists():
        return ()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


# --- one block --------------------------------------------------------------------------


def _prepare(record, contract, lead_map, pad) -> np.ndarray:
    """One record -> model-ready ``(n_leads, T)`` float32 (its own rate and leads)."""
    from ecgsoup.leads import canonical_lead_name
    from ecgsoup.preprocessing import ECGPreprocessor

    mapped = set((lead_map or {}).values())
    # Non-ECG channels (Frank vx/vy/vz, respiration ...) are irrelevant to the model.
    keep = [i for i, n in enumerate(record.lead_names) if canonical_lead_name(n) is not None or n in mapped]
    if not keep:
        raise ValueError(
            f"no standard ECG lead among {list(record.lead_names)}; say which lead each channel is with "
            f"lead_map (--lead-map on the command line), e.g. lead_map={{'I': {record.lead_names[0]!r}}}."
        )
    names = [record.lead_names[i] for i in keep]
    prep = ECGPreprocessor(sampling_rate=record.fs, lead_names=names, lead_map=lead_map, model=contract, pad=pad)
    flat = prep.fit_transform(record.signal[None, :, keep])
    return flat.reshape(contract.n_leads, -1)


def _embed_block(spec, items, record_ids, positions, model, settings, fingerprint, lead_map, pad,
                 poor_signals="flag"):  # fmt: skip
    """Read, preprocess and embed one block of records; runs in-process or on a Dask worker.

    ``spec`` is the :class:`ecgsoup.io.RecordSource` of the input.

    Returns
    -------
    positions : ndarray of int
        Store rows of the block, as given.
    pooled : ndarray of shape (len(positions), n_features), float32
        Zeros for failed records.
    status : ndarray of int8
    errors : list of str
        ``""`` for embedded records, the reason for failed ones.
    notes : dict of str to list of str
        Per-record notes: ``"quality"``, what :func:`ecgsoup.quality.signal_quality` says
        of each record (``""``: a plausible ECG), and ``"derived_leads"``, the leads
        computed from I and II (``""``: none).
    """
    from ecgsoup.io import RecordError

    embedder = _fitted_embedder(model, settings, fingerprint)
    contract = embedder.contract_
    n = len(positions)
    pooled = np.zeros((n, embedder.layer_spec_.n_features), np.float32)
    status = np.full(n, FAILED, np.int8)
    errors = [""] * n
    notes = [""] * n
    derived = [""] * n
    ready: dict[int, list] = {}
    for i, (item, record_id) in enumerate(zip(items, record_ids)):
        try:
            record = spec.read(item, record_id)
            derived[i] = ", ".join(record.metadata.get("derived_leads") or ())
            notes[i] = _quality_note(record)
            if notes[i] and poor_signals == "skip":
                errors[i] = f"not embedded (poor_signals='skip', --skip-poor-signals): {notes[i]}"
                continue
            x = _prepare(record, contract, lead_map, pad)
        except (RecordError, ValueError, OSError) as exc:
            errors[i] = _single_record_message(exc)
            continue
        ready.setdefault(x.shape[1], []).append((i, x))
    # Records of equal length go through the embedder together (its batches).
    for length in sorted(ready):
        rows = [i for i, _ in ready[length]]
        out = embedder.transform(np.stack([x for _, x in ready[length]]))
        pooled[rows] = out
        status[rows] = DONE
    return np.asarray(positions), pooled, status, errors, {"quality": notes, "derived_leads": derived}


def _quality_note(record) -> str:
    """:func:`ecgsoup.quality.signal_quality` of a record's ECG leads (other channels left out)."""
    from ecgsoup.leads import canonical_lead_name
    from ecgsoup.quality import signal_quality

    keep = [i for i, name in enumerate(record.lead_names) if canonical_lead_name(name) is not None]
    if not keep:
        return ""
    return signal_quality(record.signal[:, keep], record.fs, [record.lead_names[i] for i in keep])


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
    formats : dict
        ``{format: number of records}`` of the input (``"wfdb"``, ``"dicom"``,
        ``"ge_muse"`` ...); empty for ``.npz`` and PTB-XL inputs.
    flagged : list of (record_id, note)
        Embedded records whose signal does not look like an ECG (all zero, a
        flat lead, clipping; see :func:`ecgsoup.quality.signal_quality`).
    derived : list of (record_id, leads)
        Embedded records with leads computed from I and II (``derive_leads=True``),
        and which, as ``"III, aVR, aVL, aVF"``.
    repaired : list
        Ids of records found damaged in the store (a lost or unreadable
        chunk, an inconsistent status) and marked for re-embedding by this run.
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
    formats: dict = field(default_factory=dict)
    derived: list = field(default_factory=list)
    repaired: list = field(default_factory=list)
    flagged: list = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else float("nan")


def embed_to_store(
    source,
    store,
    *,
    model="default",
    precision="float32",
    batch_size=16,
    device="cpu",
    window_stride=None,
    lead_map=None,
    sampling_rate=None,
    ptbxl_rate=100,
    pad="error",
    format=None,
    chunk_size=DEFAULT_CHUNK_SIZE,
    limit=None,
    overwrite=False,
    client=None,
    verbose=0,
    derive_leads=False,
    id_from="hash",
    poor_signals="flag",
) -> EmbedSummary:
    """Embed every record of ``source`` into an on-disk store; resumes an existing one.

    Parameters
    ----------
    source : str or Path
        A folder of WFDB / PhysioNet-Challenge records (searched recursively),
        a single record, a PTB-XL root (its ``ptbxl_rate`` records, ``ecg_id``
        as identifiers), or an ``.npz`` holding ``x`` (records, time, leads),
        ``fs``, ``lead_names`` and optionally ``record_id`` (or ``ecg_id``)
        and ``units`` (see :func:`ecgsoup.io.list_records`).
    store : str or Path
        Output: ``*.zarr`` (a directory; needs ``zarr``) or ``*.npz``.  If it
        exists, the run resumes it: only records not yet embedded are computed.
        It may not be the input, nor contain it.
    model : str, path or STMEMEncoder, default="default"
        ``"default"`` (the bundled model), a model directory or ST-MEM
        ``.pth``, ``"random"`` (an untrained ``ecgsoup-100hz-tiny``, seed 0),
        ``"random:<config>"``, or an encoder object.
    precision : {"float32", "bfloat16"}, default="float32"
        Forward-pass precision; see :class:`~ecgsoup.embedding.LayerwiseEmbedder`.
    batch_size : int, default=16
        Windows per forward pass.
    device : str, default="cpu"
        Torch device name of the encoder (on each Dask worker too).
    window_stride : int, default=None
        Stride of the windows over long records (``None``: half a window).
    lead_map : dict, default=None
        ``{model lead: data lead}`` for leads stored under other names.
    sampling_rate : float, default=None
        Sampling rate of an ``.npz`` input that has no ``fs`` entry.
    ptbxl_rate : {100, 500}, default=100
        Which copy of a PTB-XL root to read (``records100`` or ``records500``).
    pad : {"error", "zeros", "edge"}, default="error"
        Records shorter than one model window are failed (``"error"``) or padded.
    format : {"zarr", "npz"}, default=None
        Store format; ``None`` reads it from the extension of ``store``.
    chunk_size : int, default=64
        Records per block: the unit of work, of memory, of a Dask task and of
        resumption (and the zarr chunk length).  A kill loses at most one
        block; the default is about a minute of work even on a slow CPU (see
        :data:`DEFAULT_CHUNK_SIZE`).
    limit : int, default=None
        Attempt at most this many records in this run, then stop (resumable).
    overwrite : bool, default=False
        Delete an existing store at ``store`` first instead of resuming it.
        Only a path that carries the ecgsoup store marker is deleted; anything
        else (a CSV, a foreign zarr group, the input) is refused.
    client : dask.distributed.Client, default=None
        Shard the blocks across this cluster's workers (see
        :mod:`ecgsoup.distributed`); ``None`` runs in this process.
    verbose : int, default=0
        ``> 0`` shows a progress bar over records (on stderr).
    derive_leads : bool, default=False
        Compute the limb leads III, aVR, aVL and aVF a record lacks from its
        leads I and II (see :func:`ecgsoup.io.read_records`); the store's
        ``derived_leads`` attribute then states the rule.
    id_from : {"hash", "name"}, default="hash"
        Record id of a hospital file (DICOM, XML, SCP-ECG, EDF): a hash of
        its bytes or its file name.
    poor_signals : {"flag", "skip"}, default="flag"
        Records that do not look like an ECG (all zero, a flat lead, clipping;
        see :func:`ecgsoup.quality.signal_quality`): embed them with a note
        (``quality`` in the store, ``flagged`` in the summary), or fail them
        with that note as their error.

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
        settings (ecgsoup version, model, precision, stride, lead map,
        padding), is not an ecgsoup store, or is the input.
    StoreLockedError
        If another process is writing ``store``; the message names it.
    EmbedInterrupted
        On Ctrl-C (a ``KeyboardInterrupt``), after saving every finished block.

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
    if chunk_size is None or int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size!r}; expected a positive number of records.")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit={limit!r}; expected a non-negative number of records.")
    if pad not in ("error", "zeros", "edge"):
        raise ValueError(f"pad={pad!r}; expected 'error', 'zeros' or 'edge'.")
    if poor_signals not in ("flag", "skip"):
        raise ValueError(f"poor_signals={poor_signals!r}; expected 'flag' or 'skip'.")
    store = Path(store).expanduser()
    kind = _store_kind(store, format)
    _check_not_input(source, store)
    if store.exists() and not is_store(store):  # checked again under the lock; refused before creating it
        _refuse_foreign(store, overwrite)
    with _store_lock(store):
        return _embed_locked(
            source, store, kind, model=model, precision=precision, batch_size=batch_size, device=device,
            window_stride=window_stride, lead_map=lead_map, sampling_rate=sampling_rate,
            ptbxl_rate=ptbxl_rate, pad=pad, chunk_size=int(chunk_size), limit=limit, overwrite=overwrite,
            client=client, verbose=verbose, derive_leads=derive_leads, id_from=id_from,
            poor_signals=poor_signals,
        )  # fmt: skip


def _embed_locked(source, store, kind, *, model, precision, batch_size, device, window_stride, lead_map,
                  sampling_rate, ptbxl_rate, pad, chunk_size, limit, overwrite, client, verbose,
                  derive_leads=False, id_from="hash", poor_signals="flag"):  # fmt: skip
    """:func:`embed_to_store` once the store's lock is held."""
    from ecgsoup._version import __version__
    from ecgsoup.io import list_records

    listing = list_records(source, sampling_rate=sampling_rate, ptbxl_rate=ptbxl_rate, derive_leads=derive_leads,
                           id_from=id_from)  # fmt: skip
    model = _normalise_model(model)
    settings = dict(batch_size=int(batch_size), device=str(device), precision=precision,
                    window_stride=window_stride)  # fmt: skip
    embedder = _fitted_embedder(model, settings)
    spec = embedder.layer_spec_
    backbone = embedder.model_
    card = backbone.card
    attrs = {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "ecgsoup_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(Path(source).expanduser().resolve()),
        "source_kind": listing.source.kind,
        "source_formats": listing.format_counts(),
        "ptbxl_rate": listing.source.ptbxl_rate,
        "model": model if isinstance(model, str) else f"<{type(backbone).__name__} {spec.model_name}>",
        "model_name": spec.model_name,
        "model_sha256": embedder.fingerprint_,
        "model_family": backbone.family,
        "model_config": _jsonable(dataclasses.asdict(backbone.config)),
        "model_contract": _jsonable(embedder.contract_.to_dict()),
        "model_card": _jsonable(card.to_dict()) if card is not None else None,
        "layer_spec": _jsonable(spec.to_dict()),
        "model_metadata": _jsonable(getattr(embedder.model_, "metadata", {})),
        "pretrained": bool(getattr(embedder.model_, "metadata", {}).get("pretrained", True)),
        "precision": precision,
        "window_stride": int(embedder.window_stride_),
        "lead_map": dict(lead_map or {}),
        "pad": pad,
        "sampling_rate_override": sampling_rate,
        "derived_leads": _DERIVED_LEADS_RULE if derive_leads else None,
        "n_layers": len(spec.layers),
        "n_features": int(spec.n_features),
        "layout": "embeddings (n, n_features): [h_0 | ... | h_L], widths in layer_spec",
    }
    attrs["poor_signals"] = poor_signals  # which records are embedded at all: a resume must agree
    if overwrite and store.exists():
        _remove_store(store)
    backend = _open_backend(store, mode="a", kind=kind)
    repaired = []
    if store.exists():
        # Verified before anything is computed: damaged records are marked pending and redone below.
        check = check_store(backend, keep_embeddings=False)
        _check_resume(store, backend, attrs, listing.record_ids, stored=resume_ids(
            check, listing.record_ids, same_source=backend.attrs.get("source") == attrs["source"]))
        _refuse_unrepairable(store, check)
        if check.damaged or check.bad_id_rows or check.broken_files:
            warnings.warn(check.damage_message(store, listing.record_ids).replace(
                "They are left out; run `ecgsoup embed` again with the same input and --out to re-embed them.",
                "This run re-embeds them."), StoreDamageWarning, stacklevel=3)  # fmt: skip
            repair_store(backend, check, listing.record_ids)
            repaired = [listing.record_ids[row] for row in sorted(check.damaged)]
    else:
        backend.create(listing.record_ids, spec.n_features, chunk_size, attrs)
    status = np.asarray(backend.read("status"))
    block_rows = _blocks(status, chunk_size, limit)
    n_todo = int(sum(len(rows) for rows in block_rows))
    n_reused = int((status == DONE).sum())
    tasks = [
        (listing.source, [listing.items[i] for i in rows], [listing.record_ids[i] for i in rows], rows)
        for rows in block_rows
    ]
    started = time.perf_counter()
    from tqdm.auto import tqdm

    with tqdm(total=n_todo, disable=not verbose, desc="embedding", unit="record") as bar:

        def write(result):
            positions, pooled, block_status, block_errors, notes = result
            backend.write(positions, pooled, block_status, block_errors, notes)
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
                      lead_map=lead_map, pad=pad, poor_signals=poor_signals)  # fmt: skip
        try:
            if client is None:
                for spec, items, ids, rows in tasks:
                    write(_embed_block(spec, items, ids, rows, **common))
            else:
                run_blocks(client, tasks, write, **common)
        except KeyboardInterrupt:
            backend.flush()
            saved = int((np.asarray(backend.read("status")) == DONE).sum())
            raise EmbedInterrupted(store, saved, len(listing.record_ids)) from None
        finally:
            backend.flush()
    seconds = time.perf_counter() - started
    status = np.asarray(backend.read("status"))
    messages = backend.read("error")
    failed = np.flatnonzero(status == FAILED)
    notes = _notes(backend, "quality", status == DONE)
    derived = _notes(backend, "derived_leads", status == DONE)
    return EmbedSummary(
        store=str(store),
        n_records=len(status),
        n_done=int((status == DONE).sum()),
        n_failed=int(failed.size),
        n_pending=int((status == PENDING).sum()),
        n_computed=n_todo,
        n_reused=n_reused,
        repaired=repaired,
        flagged=[(listing.record_ids[i], note) for i, note in notes.items()],
        derived=[(listing.record_ids[i], leads) for i, leads in derived.items()],
        seconds=seconds,
        errors=[(listing.record_ids[i], str(messages[i])) for i in failed],
        formats=listing.format_counts() if listing.source.kind == "files" else {},
    )


def run_blocks(client, tasks, write, *, model, settings, fingerprint, lead_map, pad, poor_signals="flag",
               max_in_flight=None):  # fmt: skip
    """Run every block of ``tasks`` on a Dask ``client``; ``write`` each result here, as it completes.

    The scheduling half of :mod:`ecgsoup.distributed` (which re-exports it):
    workers read and embed their blocks, this process alone writes the store.

    Parameters
    ----------
    client : dask.distributed.Client
    tasks : list of (source, items, record_ids, rows)
        One block each (see :func:`embed_to_store`); ``source`` is an
        :class:`ecgsoup.io.RecordSource`.
    write : callable
        Called in this process with each block's result, in completion order.
    model, settings, fingerprint, lead_map, pad, poor_signals
        Passed to every task.  An ``STMEMEncoder`` ``model`` is scattered
        (broadcast) once instead of being pickled into every task.
    max_in_flight : int, default=None
        Blocks submitted at a time; ``None`` means twice the cluster's threads.

    Raises
    ------
    Exception
        The first task failure that is not a bad record (bad records are
        results, not failures); outstanding tasks are cancelled, as they are
        on Ctrl-C.
    """
    from dask.distributed import as_completed

    from ecgsoup.backbones.stmem import STMEMEncoder

    if not tasks:
        return
    if isinstance(model, STMEMEncoder):
        model = client.scatter(model, broadcast=True, hash=False)
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = 2 * threads
    pending = iter(tasks)

    def submit(task):
        spec, items, ids, rows = task
        return client.submit(
            _embed_block, spec, items, ids, rows, model, settings, fingerprint, lead_map, pad, poor_signals,
            pure=False, key=f"ecgsoup-embed-{os.getpid()}-{int(rows[0])}-{id(task):x}",
        )  # fmt: skip

    inflight = {submit(task) for task in itertools.islice(pending, max_in_flight)}
    queue = as_completed(inflight)
    try:
        for future in queue:
            result = future.result()  # re-raises a worker's exception here
            inflight.discard(future)
            future.release()
            write(result)
            task = next(pending, None)
            if task is not None:
                new = submit(task)
                inflight.add(new)
                queue.add(new)
    except BaseException:
        client.cancel(list(inflight))
        raise


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


def _refuse_unrepairable(store: Path, check) -> None:
    """Damage a resume cannot mend (an unreadable array that is not per record) is refused."""
    if check.problems:
        raise StoreError(
            f"{store} is a damaged ecgsoup store ({'; '.join(check.problems)}) that a resume cannot repair; "
            "start it over with overwrite=True (--overwrite)."
        )


def _check_resume(store: Path, backend, attrs: dict, record_ids: list, stored=None) -> None:
    old = backend.attrs
    if old.get("format_version") != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{store} was written by an older ecgsoup (store format {old.get('format_version')}); it can be "
            "read with open_store but not resumed. Write to another path, or pass overwrite=True (--overwrite)."
        )
    different = [
        f"{key}: store has {old.get(key, _RESUME_DEFAULTS.get(key))!r}, this run {attrs[key]!r}"
        for key in _RESUME_KEYS
        if _jsonable(old.get(key, _RESUME_DEFAULTS.get(key))) != _jsonable(attrs[key])
    ]
    if different:
        raise StoreError(
            f"{store} was written with other settings ({'; '.join(different)}). Resume with the "
            "same settings, write to another path, or pass overwrite=True (--overwrite)."
        )
    stored = backend.record_ids() if stored is None else stored
    if stored != _ids_list(_ids_array(record_ids)):
        raise StoreError(
            f"{store} holds {len(stored)} records of another input listing (this input has "
            f"{len(record_ids)}, or in another order). Write to another path, or pass "
            "overwrite=True (--overwrite) to start over."
        )


def _check_not_input(source, store: Path) -> None:
    """Refuse a store path that is the input, or a folder holding it (overwriting would delete it)."""
    source = Path(source).expanduser()
    if not source.exists():
        return  # listing the input names the problem
    src, out = source.resolve(), store.resolve()
    if src == out:
        raise StoreError(f"--out {store} is the input itself; write the store to another path.")
    if out in src.parents:
        raise StoreError(f"--out {store} contains the input {source}; write the store to another path.")


def _refuse_foreign(store: Path, overwrite: bool) -> None:
    what = "folder" if store.is_dir() else "file"
    if overwrite:
        raise StoreError(
            f"Refusing to overwrite {store}: this {what} is not an ecgsoup embedding store (it lacks "
            f"the format={STORE_FORMAT!r} marker). --overwrite replaces only a store that ecgsoup "
            "wrote; remove it yourself or choose another --out."
        )
    raise StoreError(
        f"{store} exists and is not an ecgsoup embedding store (it lacks the format={STORE_FORMAT!r} "
        "marker); choose another --out."
    )


def _remove_store(store: Path) -> None:
    """Delete ``store`` only if it carries the ecgsoup marker (and, for zarr, nothing else)."""
    if not is_store(store):
        _refuse_foreign(store, overwrite=True)
    if store.is_dir():
        extra = sorted(p.name for p in store.iterdir() if p.name not in {"zarr.json", *NOTE_COLUMNS, *_REQUIRED_ARRAYS})
        if extra:
            raise StoreError(
                f"Refusing to overwrite {store}: besides the store it holds {extra[:5]}; move those "
                "out or remove the folder yourself."
            )
        # Renamed first, so an interrupted delete never leaves a half store under the name.
        doomed = Path(tempfile.mkdtemp(prefix=f".{store.name}.removing-", dir=store.parent))
        os.rename(store, doomed / store.name)
        shutil.rmtree(doomed)
    else:
        store.unlink()


def _lock_paths(store: Path) -> tuple[Path, Path]:
    return store.with_name(store.name + ".lock"), store.with_name(store.name + ".lock.json")


@contextlib.contextmanager
def _store_lock(store: Path):
    """Hold the inter-process lock of ``store`` for a whole run; refuse at once if it is held.

    The lock is :class:`filelock.FileLock` on ``<store>.lock`` (an OS lock: a
    killed holder releases it).  Beside it, ``<store>.lock.json`` says who
    holds it, so that a refused writer can name the holder.
    """
    from filelock import FileLock, Timeout

    lock_path, info_path = _lock_paths(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLockedError(
            f"{store} is being written by another ecgsoup run ({_describe_holder(info_path)}); wait "
            "for it to finish (then run again to resume), or write to another path."
        ) from None
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python",
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        tmp = info_path.with_name(f".{info_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, info_path)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        lock.release()


def _describe_holder(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return "its details are not readable yet"
    return (
        f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
        f"{info.get('command')}"
    )


def _jsonable(value):
    """JSON round trip (tuples -> lists, numpy scalars -> numbers), as attrs are stored."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    return str(value)
