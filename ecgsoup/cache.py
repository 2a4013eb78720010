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
   lookups of a grid search cost a hash each, not a file read each;
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

__all__ = ["context_key", "record_keys", "EmbeddingStore", "clear_memo", "memo_info"]

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
    """
    _MEMO.clear()


def memo_info() -> dict:
    """Number of records and bytes held by the in-process memo, and its bound."""
    return {"records": len(_MEMO), "bytes": _MEMO._bytes, "max_bytes": _MEMO.max_bytes}


def context_key(**facts) -> str:
    """sha256 of everything besides the record that determines its embedding.

    Parameters
    ----------
    **facts
        JSON-serialisable values (model fingerprint, config, version, ...).
    """
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record_keys(X: np.ndarray) -> list[str]:
    """One content hash per record of a float32 ``(n, leads, time)`` array.

    The shape of the record is hashed with its bytes, so the same samples
    read as a different number of leads give a different key.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    shape = repr(X.shape[1:]).encode()
    keys = []
    for record in X:
        # sha256 runs on the CPU's SHA extensions: about twice blake2b's speed
        # here, which matters for the thousands of lookups of a grid search.
        digest = hashlib.sha256(shape)
        digest.update(record.data)
        keys.append(digest.hexdigest())
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
        self.enabled = memory is not None and not (
            isinstance(memory, joblib.Memory) and memory.location is None
        )
        self._cached = memory.cache(_stored_embedding) if self.enabled else None

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
