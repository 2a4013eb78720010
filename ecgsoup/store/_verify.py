"""Verification and repair of embedding stores: what a damaged store really holds.

A store written by :func:`ecgsoup.store.embed_to_store` can be damaged after
the fact: a chunk file of a zarr store deleted or cut short by a copy, a full
disk or a sync tool, a status that contradicts the embeddings.  Read naively,
a missing zarr chunk reads as its fill value, so its records look embedded
with all-zero embeddings (or get the id 0), and a resume counts them done.

:func:`check_store` reads every chunk of every array once, and returns what
can be trusted:

* a record is **damaged** when its embeddings, status or error message are
  missing or unreadable, or contradict each other (a done record whose
  embedding is all zero or not finite, a failed record without a message,
  a status that is none of pending / done / failed).  Damaged records are
  left out of :func:`ecgsoup.store.open_store`'s result, named in a
  :class:`~ecgsoup.store.StoreDamageWarning`, and re-embedded by the next run on the store;
* the store as a whole is damaged when its record ids are missing, unreadable,
  empty or duplicated, when its layer specification (the ``layer_spec``
  attribute of a format-2 store, which says which columns belong to which
  layer) is missing, unreadable or disagrees with the embeddings' width, or
  when an array that is not per record (the final norm parameters of a
  format-1 store) is unreadable.  Opening it is refused; a resume restores lost
  ids from the input's listing when every intact id matches it.

Format-2 stores hold 2-D embeddings ``(n_records, n_features)`` (layer widths
may differ) and no norm arrays; format-1 stores hold 3-D embeddings
``(n_records, n_layers, dim)`` and ``norm_weight`` / ``norm_bias``.  Both are
verified; the checks of the rows do not depend on the layout.

Zarr leaves out a chunk that holds only its fill value, so a missing chunk is
damage only where the other arrays say it must exist: a done record needs its
embeddings chunk, a failed one its error chunk, and embeddings on disk need
their status.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgsoup.io import ids_list
from ecgsoup.store._schema import (
    DONE,
    FAILED,
    NOTE_COLUMNS,
    PENDING,
    ROW_ARRAYS,
    ids_array,
)

__all__ = ["StoreCheck", "check_store", "repair_store", "describe_rows", "resume_ids"]


@dataclass
class StoreCheck:
    """What :func:`check_store` found.

    Attributes
    ----------
    status : ndarray of int8
        Status of each record as stored, with damaged records set to pending.
    record_ids : list
        Stored id of each record (``None`` where the id is lost).
    messages : ndarray of str
        Error message of each record (``""`` when none, or lost).
    embeddings : ndarray or None
        Embeddings of the records ``status == done`` (in row order), when asked for.
    damaged : dict
        ``{row: what is wrong}`` for every damaged record.
    bad_id_rows : list of int
        Rows whose stored id is lost, empty or shared with another row.
    id_problems : list of str
        What is wrong with the record ids (lost, empty, shared): a resume restores them.
    problems : list of str
        Damage of the store as a whole that a resume cannot mend (an unreadable
        array that is not per record).
    broken_files : list of Path
        Unreadable chunk files: removed by :func:`repair_store` (they then read as missing).
    """

    status: np.ndarray
    record_ids: list
    messages: np.ndarray
    embeddings: np.ndarray | None
    damaged: dict = field(default_factory=dict)
    bad_id_rows: list = field(default_factory=list)
    id_problems: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    broken_files: list = field(default_factory=list)

    def damage_message(self, path, record_ids=None) -> str:
        """One line: how many records are damaged, which, why (the first reasons), and the fix."""
        ids = self.record_ids if record_ids is None else record_ids
        rows = sorted(self.damaged)
        reasons = sorted({self.damaged[r] for r in rows})
        return (
            f"{path} is damaged: {len(rows)} record(s) ({describe_rows(rows, ids)}) have {'; '.join(reasons[:3])}"
            f"{' ...' if len(reasons) > 3 else ''}. They are left out; run `ecgsoup embed` again with the "
            "same input and --out to re-embed them."
        )


def describe_rows(rows, record_ids, limit=5) -> str:
    """``"ids 12, 13, 14 ... (+5 more)"``: the first records of ``rows``, by id where known."""
    shown = []
    for row in list(rows)[:limit]:
        rid = record_ids[row] if record_ids is not None and row < len(record_ids) else None
        shown.append(f"row {row}" if rid is None else repr(rid))
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(shown) + more


def check_store(backend, *, keep_embeddings=True) -> StoreCheck:
    """Read and verify every chunk of ``backend`` (a store opened by :mod:`ecgsoup.store`).

    Parameters
    ----------
    backend
        The zarr or npz backend of an opened store.
    keep_embeddings : bool, default=True
        Return the embeddings of the intact done records (what
        :func:`ecgsoup.store.open_store` needs); ``False`` reads them only to
        verify them, one chunk at a time.

    Returns
    -------
    check : StoreCheck
    """
    if getattr(backend, "group", None) is not None:
        check = _check_zarr(backend, keep_embeddings)
    else:
        check = _check_arrays(backend.arrays, keep_embeddings)
    attrs = getattr(backend, "attrs", None)
    if attrs is not None:
        check.problems.extend(_layout_problems(attrs, tuple(backend.shape("embeddings"))))
    return check


def _layout_problems(attrs, shape: tuple) -> list:
    """What is wrong with the layout attributes: the layer specification of a format-2 store."""
    if attrs.get("format_version") == 1:
        return [] if len(shape) == 3 else [f"'embeddings' has shape {shape}; a format-1 store holds 3-D embeddings"]
    from ecgsoup.layers import LayerSpec

    if len(shape) != 2:
        return [f"'embeddings' has shape {shape}; a format-2 store holds 2-D embeddings (n_records, n_features)"]
    data = attrs.get("layer_spec")
    if data is None:
        return ["attribute 'layer_spec' is missing"]
    try:
        spec = LayerSpec.from_dict(data)
        n_features = spec.n_features
    except Exception as error:  # a hand-edited or truncated attribute: KeyError, TypeError, ValueError ...
        return [f"attribute 'layer_spec' is unreadable ({type(error).__name__}: {str(error)[:80]})"]
    problems = []
    if n_features != shape[1]:
        problems.append(f"attribute 'layer_spec' describes {n_features} columns, 'embeddings' has {shape[1]}")
    stated = attrs.get("n_features")
    if stated is not None and stated != n_features:
        problems.append(f"attribute 'n_features' is {stated!r}, 'layer_spec' describes {n_features} columns")
    if attrs.get("n_layers") is not None and attrs.get("n_layers") != len(spec.layers):
        problems.append(f"attribute 'n_layers' is {attrs.get('n_layers')!r}, 'layer_spec' has {len(spec.layers)} layers")
    return problems


# --- npz: the arrays are in memory, only their contents can disagree --------------------------


def _check_arrays(arrays: dict, keep_embeddings: bool) -> StoreCheck:
    status = np.asarray(arrays["status"]).astype(np.int8, copy=True)
    messages = np.asarray([str(m) for m in arrays["error"]], dtype=object)
    check = StoreCheck(status, ids_list(arrays["record_id"]), messages, None)
    _check_rows(check, arrays["embeddings"], np.arange(len(status)))
    _check_ids(check)
    _settle(check)
    if keep_embeddings:
        check.embeddings = np.asarray(arrays["embeddings"][check.status == DONE], np.float32)
    return check


# --- zarr: chunk by chunk ----------------------------------------------------------------------


def _chunks(array):
    """``(file, region)`` of every chunk of a zarr array: where it lives, which entries it holds."""
    root = Path(str(array.store.root))
    grid = array.metadata.chunk_grid.chunk_shape
    for coords in itertools.product(*(range(n) for n in array.cdata_shape)):
        region = tuple(slice(c * size, min((c + 1) * size, extent)) for c, size, extent in zip(coords, grid, array.shape))
        yield root / array.path / array.metadata.encode_chunk_key(coords), region


def _read_chunks(array):
    """``(file, rows, values or None, present)`` per chunk; ``values`` is ``None`` when unreadable."""
    for file, region in _chunks(array):
        present = file.is_file()
        try:
            values = np.asarray(array[region])
        except Exception:  # zarr raises RuntimeError (codec), ValueError, OSError ... on a damaged chunk
            values = None
        yield file, region[0] if region else slice(0, 1), values, present


def _read_column(check: StoreCheck, array, name: str, n: int) -> np.ndarray:
    """Read the ``status`` or ``error`` column into ``check`` chunk by chunk; which rows had a chunk file.

    An unreadable chunk marks its records damaged and is listed among the broken files.
    """
    present = np.zeros(n, bool)
    for file, rows, values, here in _read_chunks(array):
        present[rows] = here
        if values is None:
            check.broken_files.append(file)
            _damage(check, range(rows.start, rows.stop), f"an unreadable {name} chunk ({file.name})")
        elif name == "status":
            check.status[rows] = values
        else:
            check.messages[rows] = [str(v) for v in values]
    return present


def _check_zarr(backend, keep_embeddings: bool) -> StoreCheck:
    group = backend.group
    n = int(group["record_id"].shape[0])
    check = StoreCheck(np.zeros(n, np.int8), [None] * n, np.full(n, "", dtype=object), None)
    status_present = _read_column(check, group["status"], "status", n)
    error_present = _read_column(check, group["error"], "error", n)
    for file, rows, values, present in _read_chunks(group["record_id"]):
        if values is None or (not present and (rows.stop - rows.start > 1 or values.dtype.kind not in "iu")):
            # A lost chunk reads as its fill value (0 or ""), which is a valid id only for a lone record.
            if values is None:
                check.broken_files.append(file)
            check.bad_id_rows.extend(range(rows.start, rows.stop))
        else:
            check.record_ids[rows] = ids_list(values)
    for name in sorted(set(group.array_keys()) - set(ROW_ARRAYS)):
        for file, _, values, _ in _read_chunks(group[name]):
            if values is None:
                check.broken_files.append(file)
                check.problems.append(f"array {name!r} has an unreadable chunk ({file.name})")
    for name in NOTE_COLUMNS:
        if name not in group.array_keys():
            continue
        for file, rows, values, _ in _read_chunks(group[name]):
            if values is None:  # notes only: a lost one is rewritten when the records are redone
                check.broken_files.append(file)
                _damage(check, range(rows.start, rows.stop), f"an unreadable {name} chunk ({file.name})")
    kept = []
    for file, rows, values, present in _read_chunks(group["embeddings"]):
        positions = np.arange(rows.start, rows.stop)
        done = positions[check.status[positions] == DONE]
        if values is None:
            check.broken_files.append(file)
            _damage(check, done, f"an unreadable embeddings chunk ({file.name})")
            continue
        if not present:
            _damage(check, done, f"a missing embeddings chunk ({file.name})")
        else:
            # Embeddings on disk were written with a status: a lost status chunk reads as pending.
            lost = positions[~status_present[positions]]
            _damage(check, lost, f"a missing status chunk ({file.name})")
        _check_rows(check, values, positions)
        if keep_embeddings:
            kept.append((positions, values))
    failed = np.flatnonzero((check.status == FAILED) & ~error_present)
    _damage(check, failed, "a missing error chunk")
    _check_ids(check)
    _settle(check)
    if keep_embeddings:
        dims = tuple(group["embeddings"].shape[1:])
        parts = [values[check.status[positions] == DONE] for positions, values in kept]
        check.embeddings = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, *dims), np.float32)
    return check


# --- shared checks -------------------------------------------------------------------------------


def _damage(check: StoreCheck, rows, reason: str) -> None:
    for row in rows:
        check.damaged.setdefault(int(row), reason)


def _check_rows(check: StoreCheck, embeddings, positions) -> None:
    """Statuses, messages and embeddings of ``positions`` against each other."""
    status = check.status[positions]
    unknown = positions[~np.isin(status, (PENDING, DONE, FAILED))]
    _damage(check, unknown, "a status that is none of pending, done, failed")
    done = status == DONE
    if done.any():
        values = np.asarray(embeddings[np.flatnonzero(done)])
        flat = values.reshape(len(values), -1)
        rows = positions[done]
        _damage(check, rows[~np.isfinite(flat).all(axis=1)], "embeddings that are not finite")
        _damage(check, rows[~flat.any(axis=1)], "all-zero embeddings marked done")
        _damage(check, rows[[bool(check.messages[r]) for r in rows]], "an error message although marked done")
    failed = positions[status == FAILED]
    _damage(check, [r for r in failed if not check.messages[r]], "failed without a message")


def _check_ids(check: StoreCheck) -> None:
    seen: dict = {}
    for row, rid in enumerate(check.record_ids):
        if rid is None:
            continue
        if rid == "":
            check.bad_id_rows.append(row)
        else:
            seen.setdefault(rid, []).append(row)
    shared = {rid: rows for rid, rows in seen.items() if len(rows) > 1}
    for rows in shared.values():
        check.bad_id_rows.extend(rows)
    check.bad_id_rows = sorted(set(check.bad_id_rows))
    if check.bad_id_rows:
        what = []
        lost = [r for r in check.bad_id_rows if check.record_ids[r] is None]
        if lost:
            what.append(f"the ids of {len(lost)} record(s) are lost (rows {lost[0]}..{lost[-1]})")
        empty = [r for r in check.bad_id_rows if check.record_ids[r] == ""]
        if empty:
            what.append(f"{len(empty)} record(s) have an empty id")
        if shared:
            examples = ", ".join(f"{rid!r} x{len(rows)}" for rid, rows in list(shared.items())[:3])
            what.append(f"{len(shared)} id(s) are shared by several records ({examples})")
        check.id_problems.append("; ".join(what))


def _settle(check: StoreCheck) -> None:
    """Damaged records count as pending: left out when read, redone when resumed."""
    if check.damaged:
        check.status[sorted(check.damaged)] = PENDING


# --- repair on resume ----------------------------------------------------------------------------------


def resume_ids(check: StoreCheck, listing_ids: list, same_source: bool) -> list:
    """The ids to compare with the input's listing: lost or bad ids taken from it, the rest as stored.

    When no id is intact, nothing is left to compare: the ids are restored
    only for the input the store was written from (``same_source``).
    """
    if not check.bad_id_rows or len(listing_ids) != len(check.record_ids):
        return list(check.record_ids)
    if len(check.bad_id_rows) == len(listing_ids) and not same_source:
        return list(check.record_ids)
    ids = list(check.record_ids)
    for row in check.bad_id_rows:
        ids[row] = listing_ids[row]
    return ids


def repair_store(backend, check: StoreCheck, listing_ids: list) -> None:
    """Make a damaged store consistent before a resume recomputes its damaged records.

    Unreadable chunk files are removed (they then read as pending, empty
    rows), damaged records are marked pending, and lost or bad record ids are
    rewritten from ``listing_ids`` (the caller has checked that every intact
    id matches it).
    """
    for file in check.broken_files:
        if file.is_file():
            os.remove(file)
    rows = np.asarray(sorted(check.damaged), dtype=np.int64)
    group = getattr(backend, "group", None)
    if group is not None:
        if rows.size:
            group["status"].set_orthogonal_selection((rows,), np.full(rows.size, PENDING, np.int8))
        if check.bad_id_rows:
            ids = ids_array(listing_ids)
            group["record_id"][:] = ids if ids.dtype.kind in "iu" else ids.astype(object)
        return
    if rows.size:
        backend.arrays["status"][rows] = PENDING
    if check.bad_id_rows:
        backend.arrays["record_id"] = ids_array(listing_ids)
    backend.flush()
