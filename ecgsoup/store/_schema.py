"""What a store holds: its format marker, record statuses, arrays, attributes and id encoding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

STORE_FORMAT = "ecgsoup-embeddings"
STORE_FORMAT_VERSION = 2
PENDING, DONE, FAILED = 0, 1, 2

#: Records per chunk: the unit of work, of writing and of resumption.  A chunk is marked done
#: only once its embeddings are on disk, so a killed run loses at most the chunk in flight.
#: 64 records are a few seconds of work on an idle CPU with the bundled model and about ten on
#: a busy two-core machine, so even at one record per second (records of minutes, or a slow
#: machine) a kill loses about a minute.  Smaller chunks cost one more zarr chunk file per
#: chunk and array and nothing in compute, since the forward passes batch ``batch_size``
#: windows whatever the chunk length.
DEFAULT_CHUNK_SIZE = 64

# Per-record text columns written beside the embeddings ("" where there is nothing to say):
# why a signal does not look like an ECG, and which leads were computed from I and II.
NOTE_COLUMNS = ("quality", "derived_leads")
# Arrays with one entry per record (first axis); a damaged chunk of these damages its records.
ROW_ARRAYS = ("embeddings", "status", "error", "record_id", *NOTE_COLUMNS)
# What every store holds, checked as one unit when a store is opened.
REQUIRED_ARRAYS = ("embeddings", "record_id", "status", "error")
REQUIRED_ATTRS = ("format", "format_version", "ecgsoup_version", "model_sha256", "n_layers", "n_features",
                  "layer_spec", "precision", "window_stride", "pad")  # fmt: skip
# Stores of format version 1 hold the final LayerNorm as two arrays and 3-D embeddings.
REQUIRED_V1 = (("embeddings", "record_id", "status", "error", "norm_weight", "norm_bias"),
               ("format", "format_version", "ecgsoup_version", "model_sha256", "n_layers", "dim",
                "precision", "window_stride", "pad"))  # fmt: skip


def ids_array(record_ids) -> np.ndarray:
    """Record ids as stored: int64 when every id is an integer, else strings."""
    if all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in record_ids):
        return np.asarray(record_ids, dtype=np.int64)
    return np.asarray([str(r) for r in record_ids], dtype=str)


def jsonable(value):
    """JSON round trip (tuples -> lists, numpy scalars -> numbers), as attrs are stored."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    return str(value)
