"""The embedding cache: layer-wise embeddings per record (``LayerwiseEmbedder(memory=...)``).

Why a transformer-level cache rather than ``Pipeline(memory=...)``: the
pipeline cache is keyed on the whole training matrix and never covers
``transform`` on validation folds, so a ``GridSearchCV`` over 12 layers x 5
folds would still run the backbone on every fold.  Here the unit of caching
is **one record**: its key is a hash of the record's model-ready samples, so
a record embedded while it sat in one fold's training part is reused when it
turns up in another fold's test part.

Two levels, looked up in this order:

1. an in-process memo (an LRU bounded in bytes), so that the thousands of
   lookups of a grid search cost a dictionary lookup each, not a file read
   each (and a record's key is computed once: later copies of the same
   record are recognised by an exact byte comparison, see ``record_keys``);
2. the folder the user passed (``memory="cache/"`` or a ``joblib.Memory``
   with a location): one ``.npy`` file per record under
   ``<folder>/ecgsoup-embeddings/<context key>/``, which survives the process
   and is shared with joblib workers and other processes.  Each file is
   written to a temporary name and renamed into place, so a reader never
   sees half a file, and two processes caching the same record write the
   same bytes.  A file that cannot be read counts as a miss: the record is
   embedded again and the file rewritten.  Any other ``Memory``-like object
   (one with a ``cache`` method) is used through ``memory.cache``.

Every key also holds a *context*: the model fingerprint (sha256 of its
weights), the model configuration, the ecgsoup version and every setting
that changes the numbers (precision, window length, stride, normalisation).
A changed model or a new ecgsoup version therefore misses instead of
returning stale embeddings.  Settings that do not change the numbers
(``device``, ``batch_size``, ``verbose``) are not part of the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict

import joblib
import numpy as np

from ecgsoup._files import atomic_path

__all__ = [
    "context_key",
    "record_keys",
    "EmbeddingCache",
    "caching_enabled",
    "clear_memo",
    "memo_info",
    "set_memo_limits",
    "cache_folder",
    "CACHE_FOLDER",
]

# 512 MiB holds the pooled layers of ~50,000 records with a tiny model
# (13 x 192 float32 each) or ~13,000 with a base model (13 x 768).
DEFAULT_MEMO_BYTES = 512 * 2**20


class _BoundedLRU:
    """Least-recently-used mapping whose total size (``_size`` of each item) stays under a bound."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(key, value) -> int:
        raise NotImplementedError

    def set_max_bytes(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict()

    def _evict(self) -> None:
        """Drop least recently used items beyond the bound (the lock is held)."""
        while self._bytes > self.max_bytes:
            key, dropped = self._items.popitem(last=False)
            self._bytes -= self._size(key, dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


class _LRUMemo(_BoundedLRU):
    """Embeddings by ``(context, record key)``; their total ``nbytes`` stays under a bound."""

    @staticmethod
    def _size(key, value) -> int:
        return value.nbytes

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value
            self._bytes += value.nbytes
            self._evict()


_MEMO = _LRUMemo(DEFAULT_MEMO_BYTES)


def clear_memo() -> None:
    """Empty the in-process memo (the on-disk ``memory`` is left alone).

    Useful to measure a cold cache, or to free memory after a large job.
    Also forgets the record keys remembered to avoid hashing a record twice.
    """
    _MEMO.clear()
    _KEYS.clear()


def memo_info() -> dict:
    """Records and bytes held by the in-process memo, and its bound.

    ``key_bytes`` / ``key_max_bytes``: the samples kept to recognise records
    already hashed (see :func:`record_keys`), and their bound.
    """
    return {
        "records": len(_MEMO),
        "bytes": _MEMO._bytes,
        "max_bytes": _MEMO.max_bytes,
        "key_bytes": _KEYS._bytes,
        "key_max_bytes": _KEYS.max_bytes,
    }


def set_memo_limits(*, max_bytes=None, key_max_bytes=None) -> dict:
    """Bound the in-process memo and the remembered record keys; return the previous bounds.

    Parameters
    ----------
    max_bytes : int, default=None
        Bytes of embeddings the memo holds (default 512 MiB); ``None`` keeps
        the current bound.
    key_max_bytes : int, default=None
        Bytes of samples kept to recognise records already hashed (default
        256 MiB; see :func:`record_keys`); ``None`` keeps the current bound.

    Returns
    -------
    previous : dict
        ``{"max_bytes": ..., "key_max_bytes": ...}`` before the call, to
        restore them with ``set_memo_limits(**previous)``.

    Least recently used entries beyond a lowered bound are dropped at once;
    a dropped record is embedded (or hashed) again when it is next seen.
    """
    previous = {"max_bytes": _MEMO.max_bytes, "key_max_bytes": _KEYS.max_bytes}
    if max_bytes is not None:
        _MEMO.set_max_bytes(max_bytes)
    if key_max_bytes is not None:
        _KEYS.set_max_bytes(key_max_bytes)
    return previous


def context_key(**facts) -> str:
    """sha256 of everything besides the record that determines its embedding.

    Parameters
    ----------
    **facts
        JSON-serialisable values (model fingerprint, config, version, ...).
    """
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _KeyMemo(_BoundedLRU):
    """Record keys already computed, reused only after an exact content check.

    A grid search hands the embedder a fresh copy of the same rows for every
    fold and candidate, so sha256 would hash each record about 120 times in
    a 12-layer x 5-fold search.  Here a record is found by a *sketch* (its
    shape and a strided sample of its samples) and its remembered sha256 key is
    returned only if the record's full bytes equal the bytes kept with it.
    The comparison is a memcmp, several times cheaper than sha256, and exact:
    two records that share a sketch cost one more comparison, never a wrong
    key.  Bounded in bytes (least recently used records are dropped, and are
    then hashed again: slower, never wrong).
    """

    # Items: sketch -> list of (record bytes, key).
    @staticmethod
    def _size(sketch, entries) -> int:
        return sum(len(data) + len(sketch) for data, _ in entries)

    def get(self, sketch: bytes, data: bytes) -> str | None:
        with self._lock:
            entries = self._items.get(sketch)
            if entries is None:
                return None
            self._items.move_to_end(sketch)
            for kept, key in entries:
                if kept == data:
                    return key
            return None

    def put(self, sketch: bytes, data: bytes, key: str) -> None:
        size = len(data) + len(sketch)
        if size > self.max_bytes:
            return
        with self._lock:
            self._items.setdefault(sketch, []).append((data, key))
            self._items.move_to_end(sketch)
            self._bytes += size
            self._evict()


# 256 MiB holds the samples of ~5,000 records of 12 leads x 10 s at 100 Hz.
DEFAULT_KEY_MEMO_BYTES = 256 * 2**20
_KEYS = _KeyMemo(DEFAULT_KEY_MEMO_BYTES)
# Samples per record in a sketch: enough to tell real records apart at once.
_SKETCH_SAMPLES = 64


def record_keys(X: np.ndarray) -> list[str]:
    """One content hash (sha256) per record of a float32 ``(n, leads, time)`` array.

    The shape of the record is hashed with its bytes, so the same samples
    read as a different number of leads give a different key.  A record seen
    before in this process (byte for byte) gets its key back from a memo
    without being hashed again.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    shape = repr(X.shape[1:]).encode()
    flat = X.reshape(X.shape[0], int(np.prod(X.shape[1:], dtype=np.int64)))  # also for 0 records
    step = max(1, flat.shape[1] // _SKETCH_SAMPLES)
    sketches = np.ascontiguousarray(flat[:, ::step])
    keys = []
    for record, sample in zip(flat, sketches):
        data = record.tobytes()
        sketch = shape + sample.tobytes()
        key = _KEYS.get(sketch, data)
        if key is None:
            # sha256 runs on the CPU's SHA extensions: about twice blake2b's speed.
            digest = hashlib.sha256(shape)
            digest.update(data)
            key = digest.hexdigest()
            _KEYS.put(sketch, data, key)
        keys.append(key)
    return keys


# Where a folder-backed cache keeps its files, inside the user's folder.
CACHE_FOLDER = "ecgsoup-embeddings"


def cache_folder(memory) -> str | None:
    """The folder of ``.npy`` files for a ``joblib.Memory`` on local disk, else ``None``.

    ``memory="cache/"`` becomes such a ``Memory`` (``check_memory``), so this
    is the usual case.  Other ``Memory``-like objects go through their
    ``cache`` method instead.
    """
    if (
        isinstance(memory, joblib.Memory)
        and memory.location is not None
        and getattr(memory, "backend", "local") == "local"
    ):
        return os.path.join(os.fspath(memory.location), CACHE_FOLDER)
    return None


# Other Memory-like objects cache function results keyed on the arguments.
# The embeddings are computed in batches *outside* the cached function (a
# per-record call would forward one window at a time), so the function only
# hands over the value computed just before it is called: the memory then
# keeps it under (record key, context key).  On a hit it reads the kept
# value and the function is not called at all.
_HANDOFF: dict = {}


def _handed_over_embedding(record_key: str, context: str) -> np.ndarray:
    """Return the embedding handed over for this key (kept by the memory object)."""
    return _HANDOFF.pop((record_key, context))


def caching_enabled(memory) -> bool:
    """Whether a validated ``memory`` caches anything (``None`` and ``Memory(None)`` do not)."""
    return memory is not None and not (isinstance(memory, joblib.Memory) and memory.location is None)


class EmbeddingCache:
    """Look up and keep per-record embeddings for one context: the embedding cache.

    Parameters
    ----------
    memory : joblib.Memory-like or None
        Already validated (``sklearn.utils.validation.check_memory``).  With
        ``None`` or a ``Memory`` without a location nothing is cached, not
        even in the process memo (the glossary meaning of ``memory=None``).
    context : str
        From :func:`context_key`.
    """

    def __init__(self, memory, context: str):
        self.context = context
        self.enabled = caching_enabled(memory)
        folder = cache_folder(memory) if self.enabled else None
        self._folder = None if folder is None else os.path.join(folder, context)
        self._cached = memory.cache(_handed_over_embedding) if self.enabled and folder is None else None

    def get_many(self, keys: list[str]) -> dict[int, np.ndarray]:
        """Embeddings found for ``keys``, as ``{position: array}``; misses are absent."""
        found = {}
        if not self.enabled:
            return found
        for position, key in enumerate(keys):
            value = _MEMO.get((self.context, key))
            if value is None:
                value = self._read(key)
                if value is not None:
                    _MEMO.put((self.context, key), value)
            if value is not None:
                found[position] = value
        return found

    def _read(self, key: str) -> np.ndarray | None:
        """The cached embedding of ``key``, or ``None`` (absent or unreadable: a miss)."""
        if self._folder is not None:
            try:
                value = np.load(os.path.join(self._folder, key + ".npy"), allow_pickle=False)
            except (OSError, ValueError, EOFError):
                # Absent, truncated or not an array file: embedded again, then rewritten.
                return None
            if value.dtype != np.float32 or value.ndim != 1:
                return None
        else:
            # Memory-like objects other than joblib's may lack the check: then
            # every record not in the memo counts as a miss (recomputed, correct).
            check = getattr(self._cached, "check_call_in_cache", None)
            if check is None or not check(key, self.context):
                return None
            try:
                value = np.array(self._cached(key, self.context), dtype=np.float32)  # copies memmaps
            except KeyError:
                # The entry vanished or is unreadable and the memory tried to
                # recompute it: a miss, recomputed by the caller.
                return None
        value.setflags(write=False)
        return value

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Keep ``{record key: embedding}`` in the memo and on disk."""
        if not self.enabled:
            return
        values = {}
        for key, value in items.items():
            value = np.array(value, dtype=np.float32)
            value.setflags(write=False)  # shared between callers: nobody may edit it
            values[key] = value
            _MEMO.put((self.context, key), value)
        if self._folder is not None:
            self._write_files(values)
            return
        for key, value in values.items():
            _HANDOFF[(key, self.context)] = value
            try:
                self._cached(key, self.context)
            finally:
                # Left over when another process cached the key first.
                _HANDOFF.pop((key, self.context), None)

    def _write_files(self, values: dict[str, np.ndarray]) -> None:
        """One ``<key>.npy`` per record, each written aside and renamed into place."""
        try:
            for key, value in values.items():
                path = os.path.join(self._folder, key + ".npy")
                with atomic_path(path) as temporary, open(temporary, "wb") as file:
                    np.save(file, value, allow_pickle=False)
        except OSError as error:
            # The embeddings are correct and returned; only the disk copy is missing.
            warnings.warn(
                f"Could not write the embedding cache in {self._folder} ({error}); the embeddings "
                "are computed but will be recomputed next time. Give memory= a writable folder "
                "with free space, or memory=None to cache nothing.",
                RuntimeWarning,
                stacklevel=4,
            )


_DEPRECATED = {"EmbeddingStore": "EmbeddingCache", "STORE_FOLDER": "CACHE_FOLDER", "store_folder": "cache_folder"}


def __getattr__(name):
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        warnings.warn(
            f"ecgsoup.cache.{name} is deprecated and will be removed in the next release; use "
            f"ecgsoup.cache.{new} (the embedding cache, not to be confused with ecgsoup.store).",
            FutureWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
