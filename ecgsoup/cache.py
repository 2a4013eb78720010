"""Per-record cache of layer-wise embeddings (used by ``LayerwiseEmbedder(memory=...)``).

Why a transformer-level cache rather than ``Pipeline(memory=...)``: the
pipeline cache is keyed on the whole training matrix and never covers
``transform`` on validation folds, so a ``GridSearchCV`` over 12 layers x 5
folds would still run the backbone on every fold (ecosystem notes 1.4).
Here the unit of caching is **one record**: its key is a hash of the
record's model-ready samples, so a record embedded while it sat in one
fold's training part is reused when it turns up in another fold's test part.

Two levels, looked up in this order:

1. an in-process memo (an LRU bounded in bytes), so that the thousands of
   lookups of a grid search cost a dictionary lookup each, not a file read
   each (and a record's key is computed once: later copies of the same
   record are recognised by an exact byte comparison, see ``record_keys``);
2. the ``joblib.Memory`` the user passed (a folder on disk), which survives
   the process and is shared with joblib workers.

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
import threading
from collections import OrderedDict

import joblib
import numpy as np

__all__ = ["context_key", "record_keys", "EmbeddingStore", "caching_enabled", "clear_memo", "memo_info"]

# 512 MiB holds the pooled layers of ~50,000 records with a tiny model
# (13 x 192 float32 each) or ~13,000 with a base model (13 x 768).
DEFAULT_MEMO_BYTES = 512 * 2**20


class _LRUMemo:
    """Least-recently-used mapping whose total ``nbytes`` stays under a bound."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

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
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


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


def context_key(**facts) -> str:
    """sha256 of everything besides the record that determines its embedding.

    Parameters
    ----------
    **facts
        JSON-serialisable values (model fingerprint, config, version, ...).
    """
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class _KeyMemo:
    """Record keys already computed, reused only after an exact content check.

    A grid search hands the embedder a fresh copy of the same rows for every
    fold and candidate, so sha256 would hash each record about 120 times in
    a 12-layer x 5-fold search.  Here a record is found by a *probe* (its
    shape and a strided sample of its samples) and its stored sha256 key is
    returned only if the record's full bytes equal the bytes stored with it.
    The comparison is a memcmp, several times cheaper than sha256, and exact:
    two records that share a probe cost one more comparison, never a wrong
    key.  Bounded in bytes (least recently used records are dropped, and are
    then hashed again: slower, never wrong).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()  # probe -> list of (bytes, key)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, probe: bytes, data: bytes) -> str | None:
        with self._lock:
            entries = self._items.get(probe)
            if entries is None:
                return None
            self._items.move_to_end(probe)
            for stored, key in entries:
                if stored == data:
                    return key
            return None

    def put(self, probe: bytes, data: bytes, key: str) -> None:
        size = len(data) + len(probe)
        if size > self.max_bytes:
            return
        with self._lock:
            self._items.setdefault(probe, []).append((data, key))
            self._items.move_to_end(probe)
            self._bytes += size
            while self._bytes > self.max_bytes:
                dropped_probe, dropped = self._items.popitem(last=False)
                self._bytes -= sum(len(d) + len(dropped_probe) for d, _ in dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


# 256 MiB holds the samples of ~5,000 records of 12 leads x 10 s at 100 Hz.
DEFAULT_KEY_MEMO_BYTES = 256 * 2**20
_KEYS = _KeyMemo(DEFAULT_KEY_MEMO_BYTES)
# Samples per record in a probe: enough to tell real records apart at once.
_PROBE_SAMPLES = 64


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
    step = max(1, flat.shape[1] // _PROBE_SAMPLES)
    probes = np.ascontiguousarray(flat[:, ::step])
    keys = []
    for record, sample in zip(flat, probes):
        data = record.tobytes()
        probe = shape + sample.tobytes()
        key = _KEYS.get(probe, data)
        if key is None:
            # sha256 runs on the CPU's SHA extensions: about twice blake2b's speed.
            digest = hashlib.sha256(shape)
            digest.update(data)
            key = digest.hexdigest()
            _KEYS.put(probe, data, key)
        keys.append(key)
    return keys


# joblib.Memory caches function results keyed on the arguments.  The
# embeddings are computed in batches *outside* the cached function (a
# per-record call would forward one window at a time), so the function only
# hands over the value computed just before it is called: joblib then writes
# it under (record key, context key).  On a hit joblib reads the file and the
# function is not called at all.
_HANDOFF: dict = {}


def _stored_embedding(record_key: str, context: str) -> np.ndarray:
    """Return the embedding handed over for this key (stored by joblib)."""
    return _HANDOFF.pop((record_key, context))


# joblib.Memory(location).cache(f) builds a new wrapper (and checks the folder)
# each time; a grid search builds ~120 stores, so the wrapper of a plain
# joblib.Memory is kept per (location, settings).  Other Memory-like objects
# are wrapped every time.
_WRAPPERS: dict = {}
_WRAPPERS_LOCK = threading.Lock()


def _cached_function(memory):
    if type(memory) is not joblib.Memory:
        return memory.cache(_stored_embedding)
    key = (str(memory.location), memory.backend, memory.mmap_mode, memory.compress,
           getattr(memory, "_verbose", None))
    with _WRAPPERS_LOCK:
        wrapped = _WRAPPERS.get(key)
        if wrapped is None:
            wrapped = _WRAPPERS[key] = memory.cache(_stored_embedding)
            if len(_WRAPPERS) > 16:
                _WRAPPERS.pop(next(iter(_WRAPPERS)))
        return wrapped


def caching_enabled(memory) -> bool:
    """Whether a validated ``memory`` caches anything (``None`` and ``Memory(None)`` do not)."""
    return memory is not None and not (isinstance(memory, joblib.Memory) and memory.location is None)


class EmbeddingStore:
    """Look up and store per-record embeddings for one context.

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
        self._cached = _cached_function(memory) if self.enabled else None

    def get_many(self, keys: list[str]) -> dict[int, np.ndarray]:
        """Embeddings found for ``keys``, as ``{position: array}``; misses are absent."""
        found = {}
        if not self.enabled:
            return found
        for position, key in enumerate(keys):
            value = _MEMO.get((self.context, key))
            if value is None and self._in_store(key):
                try:
                    value = self._read(key)
                except KeyError:
                    # The entry vanished or is unreadable and joblib tried to
                    # recompute it: treat as a miss, it is recomputed below.
                    value = None
                if value is not None:
                    _MEMO.put((self.context, key), value)
            if value is not None:
                found[position] = value
        return found

    def _in_store(self, key: str) -> bool:
        # Memory-like objects other than joblib's may lack the check: then
        # every record not in the memo counts as a miss (recomputed, correct).
        check = getattr(self._cached, "check_call_in_cache", None)
        return bool(check is not None and check(key, self.context))

    def _read(self, key: str) -> np.ndarray:
        value = np.array(self._cached(key, self.context), dtype=np.float32)  # copies memmaps
        value.setflags(write=False)
        return value

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store ``{record key: embedding}`` in the memo and on disk."""
        if not self.enabled:
            return
        for key, value in items.items():
            value = np.array(value, dtype=np.float32)
            value.setflags(write=False)  # shared between callers: nobody may edit it
            _HANDOFF[(key, self.context)] = value
            try:
                self._cached(key, self.context)
            finally:
                # Left over when another process stored the key first.
                _HANDOFF.pop((key, self.context), None)
            _MEMO.put((self.context, key), value)
