"""Store backends: a zarr v3 group written in place, or one ``.npz`` rewritten whole.

Both hold the same arrays and attributes (see :mod:`ecgsoup.store`); the run, the reader and the
verification go through :func:`open_backend` and never touch a format directly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ecgsoup._files import atomic_path
from ecgsoup.io import ids_list, read_npz
from ecgsoup.store._errors import StoreError
from ecgsoup.store._schema import (
    NOTE_COLUMNS,
    PENDING,
    REQUIRED_ARRAYS,
    REQUIRED_ATTRS,
    REQUIRED_V1,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    ids_array,
)

__all__ = ["ZarrBackend", "NpzBackend", "open_backend", "store_kind", "is_store", "read_notes"]

# An .npz store is rewritten whole; do it at most this often (and always at the end).
NPZ_FLUSH_SECONDS = 10.0


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
            attrs = read_npz(path, names=("attrs",)).get("attrs")
        except (OSError, ValueError, EOFError):
            return False
        return attrs is not None and json.loads(str(attrs)).get("format") == STORE_FORMAT
    return False


def store_kind(path: Path, requested: str | None = None) -> str:
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


def open_backend(path: Path, mode: str, kind: str | None = None):
    kind = store_kind(path, kind)
    backend = ZarrBackend(path, mode) if kind == "zarr" else NpzBackend(path, mode)
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
    arrays, required = REQUIRED_V1 if attrs.get("format_version") == 1 else (REQUIRED_ARRAYS, REQUIRED_ATTRS)
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


class ZarrBackend:
    """Zarr v3 group; rows are written in place, so memory stays O(chunk)."""

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
        ids = ids_array(record_ids)
        if ids.dtype.kind in "iu":
            group.create_array("record_id", data=ids.astype(np.int64), chunks=(max(1, min(n, 65536)),))
        else:
            array = group.create_array("record_id", shape=(n,), chunks=(max(1, min(n, 65536)),),
                                       dtype=VariableLengthUTF8(), fill_value="")  # fmt: skip
            array[:] = ids.astype(object)
        group.attrs.update(attrs)  # one write of zarr.json: every attribute together

    def read(self, name) -> np.ndarray:
        return np.asarray(self.group[name][...])

    def record_ids(self) -> list:
        return ids_list(self.read("record_id"))

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


class NpzBackend:
    """One ``.npz``, held in memory and rewritten atomically after every chunk (at most every
    ``NPZ_FLUSH_SECONDS``, and always at the end)."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self.arrays: dict = {}
        self._attrs: dict = {}
        self._dirty = False
        self._flushed_at = 0.0
        if path.exists():
            try:
                self.arrays = read_npz(path)
                self._attrs = json.loads(str(self.arrays.pop("attrs")))
            except (OSError, ValueError, EOFError, KeyError) as exc:
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
            "record_id": ids_array(record_ids),
            "status": np.full(n, PENDING, np.int8),
            "error": np.full(n, "", dtype=object),
        }
        self._attrs = dict(attrs)
        self.flush()

    def read(self, name) -> np.ndarray:
        return self.arrays[name]

    def record_ids(self) -> list:
        return ids_list(self.arrays["record_id"])

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
        if not force and time.monotonic() - self._flushed_at < NPZ_FLUSH_SECONDS:
            return
        arrays = dict(self.arrays)
        # Plain unicode arrays: an npz must load without allow_pickle.
        arrays["error"] = np.asarray([str(e) for e in arrays["error"]], dtype=str)
        for name in NOTE_COLUMNS:
            if name in arrays:
                arrays[name] = np.asarray([str(e) for e in arrays[name]], dtype=str)
        arrays["attrs"] = np.asarray(json.dumps(self._attrs))
        with atomic_path(self.path, suffix=".tmp.npz") as tmp, open(tmp, "wb") as file:
            np.savez(file, **arrays)  # a kill leaves the previous, complete file
        self._dirty = False
        self._flushed_at = time.monotonic()


def read_notes(backend, name, rows) -> dict:
    """``{row: note}`` of the ``rows`` (a mask) with a note in the per-record column ``name``."""
    if name not in backend.names():
        return {}
    notes = backend.read(name)
    return {int(i): str(notes[i]) for i in np.flatnonzero(rows) if str(notes[i])}

