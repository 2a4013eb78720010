"""The one lazy ``.npz`` reader of the package: big members read a record at a time, the rest loaded.

An input ``.npz`` may hold more records than fit in memory, and a compressed
member may expand to far more than its size on disk, so sizes are read from
the ``.npy`` headers before anything is loaded, and the signals are read one
record at a time.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zipfile
from collections import OrderedDict

import numpy as np

from ecgsoup.signal import MAX_RECORD_VALUES

__all__ = ["open_npz", "npz_members", "read_npz", "NpzRows"]

_NPZ_CACHE: OrderedDict = OrderedDict()
_NPZ_LOCK = threading.Lock()


def open_npz(path, rows=("x",)) -> dict:
    """The arrays of an ``.npz``, with the big ones read a record (first-axis row) at a time.

    The file is opened once per process and kept while it is unchanged (a
    Dask worker reads many rows of one input), so call this for every row
    rather than holding the result.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` (written by ``np.savez`` or ``np.savez_compressed``).
    rows : sequence of str, default=("x",)
        Members never loaded whole, so memory stays flat in the number of
        records: each is returned as an :class:`NpzRows` reading one row per
        index, with a positioned read for a stored (``np.savez``) member or by
        decompressing a compressed (``np.savez_compressed``) one.  A
        Fortran-ordered member is memory-mapped (stored) or loaded whole
        (compressed: its rows are spread through the stream), as a numpy array.
        Such members must hold integers or floats.

    Returns
    -------
    arrays : dict of str to ndarray or NpzRows
        Every member of the file.  Those not in ``rows`` are small entries
        (``fs``, ``lead_names``, ``record_id``): loaded, after their size is
        read from the ``.npy`` header and refused when larger than one record
        may be.

    Raises
    ------
    ValueError
        If the file is not a readable ``.npz``, or a member is refused (the
        message names it and why).

    Examples
    --------
    >>> arrays = open_npz("inputs.npz")  # doctest: +SKIP
    >>> arrays["x"][3].shape, float(arrays["fs"])  # doctest: +SKIP
    ((5000, 12), 500.0)
    >>> x = np.asarray(arrays["x"])  # every record at once  # doctest: +SKIP
    """
    path = str(path)
    rows = tuple(rows)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, rows)
    with _NPZ_LOCK:
        if key in _NPZ_CACHE:
            return _NPZ_CACHE[key]
    try:
        arrays = _load_npz(path, rows)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the .npz ({type(exc).__name__}: {exc}).") from None
    with _NPZ_LOCK:
        _NPZ_CACHE[key] = arrays
        while len(_NPZ_CACHE) > 2:
            _NPZ_CACHE.popitem(last=False)
    return arrays


def npz_members(path) -> dict:
    """``{name: (shape, dtype)}`` of every member of an ``.npz``, read from the ``.npy`` headers alone.

    Nothing is loaded or decompressed, so this is cheap on any file; it
    raises ``ValueError`` for a file that is not a readable ``.npz``.
    """
    path = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.endswith(".npy")]
        headers = {name[: -len(".npy")]: _member_header(path, name) for name in members}
        return {name: (tuple(shape), dtype) for name, (shape, _, dtype, _, _) in headers.items()}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the .npz ({type(exc).__name__}: {exc}).") from None


def read_npz(path, names=None) -> dict:
    """The members ``names`` (all when ``None``) of an ``.npz`` written by ecgsoup, each loaded whole.

    For files the package writes itself (an embedding store), which are read
    whole and rewritten; members not asked for stay unread.  Inputs, which may
    hold more records than fit in memory, are read with :func:`open_npz`.

    Raises
    ------
    ValueError
        For a file that is not an ``.npz`` (a plain ``.npy`` included) or
        that holds Python objects.  ``OSError`` and ``EOFError`` from reading
        the file propagate.
    """
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy loads as one array
        raise ValueError(f"{path} is not an .npz file")
    with data:
        return {key: data[key] for key in data.files if names is None or key in names}


def _load_npz(path: str, rows: tuple) -> dict:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.files)
    arrays = {}
    for name in names:
        if name in rows:
            continue
        # Sizes from the .npy headers, before anything is decompressed: a small compressed
        # member can expand to gigabytes.
        shape, _, dtype, _, _ = _member_header(path, f"{name}.npy")
        n_values = int(np.prod(shape, dtype=np.int64))
        if n_values > MAX_RECORD_VALUES:
            raise ValueError(f"{name} has shape {tuple(shape)} ({n_values} values); that is not an entry of an "
                             "ECG input. Remove it or store it elsewhere.")  # fmt: skip
        with np.load(path, allow_pickle=False) as data:
            arrays[name] = data[name]
    for name in rows:
        if name in names:
            arrays[name] = _lazy_member(path, f"{name}.npy")
    return arrays


def _member_header(path: str, member: str):
    """``(shape, fortran, dtype, header_length, info)`` of one ``.npy`` member of an ``.npz``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:  # (2, 0) and (3, 0) share the layout; 3.0 only allows utf-8 field names
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            header_length = stream.tell()
    return shape, fortran, dtype, header_length, info


def _lazy_member(path: str, member: str):
    """A record-at-a-time reader of one ``.npy`` member (whole or mapped in Fortran order)."""
    shape, fortran, dtype, header_length, info = _member_header(path, member)
    if dtype.hasobject:
        raise ValueError(f"{member} holds Python objects; store the signals as a numeric array.")
    if dtype.kind not in "biuf":
        raise ValueError(f"{member} holds {dtype} values; store the signals as integers or floats.")
    per_record = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if per_record > MAX_RECORD_VALUES:
        raise ValueError(
            f"{member} has shape {tuple(shape)}: {per_record} values per record, more than ecgsoup reads at "
            f"once ({MAX_RECORD_VALUES}); check the shape, or split the recordings."
        )
    expected = header_length + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != expected:
        raise ValueError(f"{member} holds {info.file_size} bytes but its header describes {expected} "
                         f"(shape {tuple(shape)}, {dtype}): the file is damaged or was not written by numpy.")
    if fortran and len(shape) > 1 and info.compress_type != zipfile.ZIP_STORED:
        # A record's samples are spread through a deflated stream: read it whole (as np.load does).
        with np.load(path, allow_pickle=False) as data:
            return data[member[: -len(".npy")]]
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as raw:
            # The member's bytes follow its local file header (30 bytes, the
            # name and an extra field, whose lengths are at offsets 26 and 28).
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{member}: damaged zip entry (no local file header).")
            name_length = int.from_bytes(local[26:28], "little")
            extra_length = int.from_bytes(local[28:30], "little")
        offset = info.header_offset + 30 + name_length + extra_length + header_length
        if 0 in shape:
            return np.empty(shape, dtype=dtype)
        if fortran and len(shape) > 1:
            # A record's samples are scattered through the file: map it instead.
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F")
        return _StoredRows(path, shape, dtype, offset)
    return _CompressedRows(path, member, shape, dtype, header_length)


class NpzRows:
    """Records (first axis) of a C-ordered ``.npy`` inside an ``.npz``, read one at a time.

    ``rows[i]`` is record ``i`` as a read-only array; ``len``, ``shape``,
    ``dtype`` and ``ndim`` are those of the whole member, and
    ``np.asarray(rows)`` reads every record into one array.
    """

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), dtype, len(shape)
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item):
        index = int(item)
        if index < 0:
            index += self.shape[0]
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"record {item} is out of range for {self.shape[0]} records.")
        data = self._read(index)
        if len(data) != self._row_bytes:
            raise ValueError(f"{self.path}: x ends before record {index} (truncated file?).")
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        whole = np.empty(self.shape, dtype=self.dtype)
        for index in range(self.shape[0]):
            whole[index] = self[index]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _read(self, index: int) -> bytes:
        raise NotImplementedError


class _StoredRows(NpzRows):
    """Rows of an uncompressed member: one positioned read (``os.pread``) each.

    Nothing of the file stays in the process: a memory map would count every
    page it touched in the resident set, which grows with the input.
    """

    def __init__(self, path, shape, dtype, offset):
        super().__init__(path, shape, dtype)
        self._offset = offset

    def _read(self, index: int) -> bytes:
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(descriptor, self._row_bytes, self._offset + index * self._row_bytes)
        finally:
            os.close(descriptor)


class _CompressedRows(NpzRows):
    """Rows of a compressed member, decompressed one at a time.

    Reading in order streams through the member once; going back restarts
    the decompression from the start of the member (zip has no random
    access into a deflated stream), which is slower but uses no more memory.
    """

    _archive = _stream = None  # set on first read; closed by __del__

    def __init__(self, path, member, shape, dtype, header_length):
        super().__init__(path, shape, dtype)
        self.member = member
        self._header_length = header_length
        self._lock = threading.Lock()

    def _read(self, index: int) -> bytes:
        with self._lock:
            if self._stream is None:
                self._archive = zipfile.ZipFile(self.path)
                self._stream = self._archive.open(self.member)
            self._stream.seek(self._header_length + index * self._row_bytes)
            return self._stream.read(self._row_bytes)

    def __del__(self):
        for handle in (self._stream, self._archive):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
