"""One chunk of records: read, preprocessed and embedded, in this process or on a Dask worker."""

from __future__ import annotations

import re

import numpy as np

from ecgsoup.store._embedders import fitted_embedder
from ecgsoup.store._schema import DONE, FAILED

__all__ = ["embed_chunk", "plan_chunks"]


def plan_chunks(status: np.ndarray, chunk_size: int, limit) -> list[np.ndarray]:
    """Rows not yet done, grouped by aligned chunk (one zarr chunk each), at most ``limit`` rows."""
    todo = np.flatnonzero(status != DONE)
    if limit is not None:
        todo = todo[: int(limit)]
    if todo.size == 0:
        return []
    chunk_of = todo // chunk_size
    cuts = np.flatnonzero(np.diff(chunk_of)) + 1
    return np.split(todo, cuts)


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


def embed_chunk(spec, items, record_ids, positions, model, settings, fingerprint, lead_map, pad,
                poor_signals="flag"):  # fmt: skip
    """Read, preprocess and embed one chunk of records; runs in-process or on a Dask worker.

    The task of :func:`embed_to_store` and :func:`ecgsoup.distributed.run_chunks`: bad
    records are results (failed, with their reason), not exceptions.

    Parameters
    ----------
    spec : ecgsoup.io.RecordSource
        The input, as :func:`ecgsoup.io.list_records` lists it.
    items, record_ids : list
        The chunk's entries of the listing (``listing.items``, ``listing.record_ids``).
    positions : ndarray of int
        Their rows in the store.
    model, settings, fingerprint
        See :func:`fitted_embedder`: the embedder is loaded once per process.
    lead_map, pad, poor_signals
        As :func:`embed_to_store` takes them.

    Returns
    -------
    positions : ndarray of int
        Store rows of the chunk, as given.
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

    embedder = fitted_embedder(model, settings, fingerprint)
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

