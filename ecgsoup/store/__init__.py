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
retried: the file may have been fixed), one chunk of ``chunk_size`` records at
a time, and marks a chunk done only after its embeddings are written.  A run
that is killed, or stopped with ``limit``, loses at most one chunk (see
:data:`DEFAULT_CHUNK_SIZE`); one stopped with Ctrl-C saves every finished
chunk and raises :class:`EmbedInterrupted`.  The ecgsoup version, the model's
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
second writer on the same store is refused at once, naming the first
(:func:`store_lock`).

**Verified.** Opening or resuming a store reads every chunk and checks the
arrays against each other (:func:`check_store`): records whose chunk
is missing or unreadable, or whose status contradicts their embeddings, are
named in a :class:`StoreDamageWarning`, left out of :func:`open_store`, and
re-embedded by the next run; lost record ids are restored from the input.

**Bad records** (unreadable file, NaN samples, missing leads, too short) are
never dropped silently: each one is reported with a
:class:`SkippedRecordWarning`, marked failed in ``status`` with its message
in ``error``, and listed by :func:`open_store` in ``errors``.

**Distributed.** With a Dask ``client``, the chunks run as tasks on its workers
(:func:`ecgsoup.distributed.run_chunks`); this process alone writes the store.
"""

from __future__ import annotations

import warnings

from ecgsoup.store._backends import is_store
from ecgsoup.store._chunk import embed_chunk
from ecgsoup.store._embedders import embedder_memo_info, fitted_embedder
from ecgsoup.store._errors import (
    EmbedInterrupted,
    SkippedRecordWarning,
    StoreDamageWarning,
    StoreError,
    StoreLockedError,
)
from ecgsoup.store._read import StoredEmbeddings, open_store
from ecgsoup.store._run import EmbedSummary, embed_to_store
from ecgsoup.store._safety import store_lock
from ecgsoup.store._schema import (
    DEFAULT_CHUNK_SIZE,
    DONE,
    FAILED,
    NOTE_COLUMNS,
    PENDING,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
)
from ecgsoup.store._verify import StoreCheck, check_store, describe_rows, repair_store, resume_ids

# One concept per module; the arrows of their imports go down this list:
#   _schema     what a store holds: format marker, statuses, arrays, attributes, record ids
#   _errors     what a run raises and warns
#   _backends   the zarr and npz formats (the only code that touches either)
#   _verify     verification of every chunk, and repair before a resume
#   _models     which model a store is written with, resolved alike in every process
#   _embedders  the per-process memo of fitted embedders
#   _chunk      one chunk of records: read, preprocess, embed (in process or on a worker)
#   _safety     the writer's lock, and refusal to delete or overwrite what is not a store
#   _read       open_store
#   _run        embed_to_store: list, create or resume, embed the chunks left
# Dask scheduling is ecgsoup.distributed, which _run imports only when given a client.

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
    "store_lock",
    "embed_chunk",
    "fitted_embedder",
    "embedder_memo_info",
    "StoreCheck",
    "check_store",
    "repair_store",
    "resume_ids",
    "describe_rows",
    "DEFAULT_CHUNK_SIZE",
    "NOTE_COLUMNS",
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "PENDING",
    "DONE",
    "FAILED",
]


def __getattr__(name):
    if name == "run_blocks":
        warnings.warn(
            "ecgsoup.store.run_blocks is deprecated and will be removed in the next release; "
            "use ecgsoup.distributed.run_chunks.",
            FutureWarning,
            stacklevel=2,
        )
        from ecgsoup.distributed import run_chunks

        return run_chunks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
