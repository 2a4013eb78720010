"""The run itself: :func:`embed_to_store` lists the input, resumes the store, and embeds what is left."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ecgsoup.io import ids_list
from ecgsoup.store._backends import is_store, open_backend, read_notes, store_kind
from ecgsoup.store._chunk import embed_chunk, plan_chunks
from ecgsoup.store._embedders import fitted_embedder
from ecgsoup.store._errors import (
    EmbedInterrupted,
    SkippedRecordWarning,
    StoreDamageWarning,
    StoreError,
)
from ecgsoup.store._models import normalise_model
from ecgsoup.store._safety import check_not_input, refuse_foreign, remove_store, store_lock
from ecgsoup.store._schema import (
    DEFAULT_CHUNK_SIZE,
    DONE,
    FAILED,
    PENDING,
    STORE_FORMAT,
    STORE_FORMAT_VERSION,
    ids_array,
    jsonable,
)
from ecgsoup.store._verify import check_store, repair_store, resume_ids

__all__ = ["EmbedSummary", "embed_to_store"]

# Settings that change the stored numbers: a resumed run must match them.
_RESUME_KEYS = ("ecgsoup_version", "model_sha256", "precision", "window_stride", "lead_map", "pad",
                "sampling_rate_override", "ptbxl_rate", "derived_leads", "poor_signals")  # fmt: skip
# What a store records when limb leads were computed (None when they were not: older stores match).
_DERIVED_LEADS_RULE = "III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2, where a record lacks them"
# What a store written before a setting existed was written with.
_RESUME_DEFAULTS = {"poor_signals": "flag"}


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
        Records per chunk: the unit of work, of memory, of a Dask task and of
        resumption (and the zarr chunk length).  A kill loses at most one
        chunk; the default is about a minute of work even on a slow CPU (see
        :data:`DEFAULT_CHUNK_SIZE`).
    limit : int, default=None
        Attempt at most this many records in this run, then stop (resumable).
    overwrite : bool, default=False
        Delete an existing store at ``store`` first instead of resuming it.
        Only a path that carries the ecgsoup store marker is deleted; anything
        else (a CSV, a foreign zarr group, the input) is refused.
    client : dask.distributed.Client, default=None
        Shard the chunks across this cluster's workers (see
        :func:`ecgsoup.distributed.run_chunks`); ``None`` runs in this process.
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
        On Ctrl-C (a ``KeyboardInterrupt``), after saving every finished chunk.

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
    kind = store_kind(store, format)
    check_not_input(source, store)
    if store.exists() and not is_store(store):  # checked again under the lock; refused before creating it
        refuse_foreign(store, overwrite)
    with store_lock(store):
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
    model = normalise_model(model)
    settings = dict(batch_size=int(batch_size), device=str(device), precision=precision,
                    window_stride=window_stride)  # fmt: skip
    embedder = fitted_embedder(model, settings)
    spec = embedder.layer_spec_
    backbone = embedder.model_
    card = backbone.card
    attrs = {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "ecgsoup_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(Path(source).expanduser().resolve()),
        "source_kind": listing.source.kind,
        "source_formats": listing.format_counts(),
        "ptbxl_rate": listing.source.ptbxl_rate,
        "model": model if isinstance(model, str) else f"<{type(backbone).__name__} {spec.model_name}>",
        "model_name": spec.model_name,
        "model_sha256": embedder.fingerprint_,
        "model_family": backbone.family,
        "model_config": jsonable(dataclasses.asdict(backbone.config)),
        "model_contract": jsonable(embedder.contract_.to_dict()),
        "model_card": jsonable(card.to_dict()) if card is not None else None,
        "layer_spec": jsonable(spec.to_dict()),
        "model_metadata": jsonable(getattr(embedder.model_, "metadata", {})),
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
        remove_store(store)
    backend = open_backend(store, mode="a", kind=kind)
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
    chunk_rows = plan_chunks(status, chunk_size, limit)
    n_todo = int(sum(len(rows) for rows in chunk_rows))
    n_reused = int((status == DONE).sum())
    tasks = [
        (listing.source, [listing.items[i] for i in rows], [listing.record_ids[i] for i in rows], rows)
        for rows in chunk_rows
    ]
    started = time.perf_counter()
    from tqdm.auto import tqdm

    with tqdm(total=n_todo, disable=not verbose, desc="embedding", unit="record") as bar:

        def write(result):
            positions, pooled, chunk_status, chunk_errors, notes = result
            backend.write(positions, pooled, chunk_status, chunk_errors, notes)
            for position, message in zip(positions, chunk_errors):
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
                for record_source, items, ids, rows in tasks:
                    write(embed_chunk(record_source, items, ids, rows, **common))
            else:
                # Imported here: the scheduling module builds on this package, not the reverse.
                from ecgsoup.distributed import run_chunks

                run_chunks(client, tasks, write, **common)
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
    notes = read_notes(backend, "quality", status == DONE)
    derived = read_notes(backend, "derived_leads", status == DONE)
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
        if jsonable(old.get(key, _RESUME_DEFAULTS.get(key))) != jsonable(attrs[key])
    ]
    if different:
        raise StoreError(
            f"{store} was written with other settings ({'; '.join(different)}). Resume with the "
            "same settings, write to another path, or pass overwrite=True (--overwrite)."
        )
    stored = backend.record_ids() if stored is None else stored
    if stored != ids_list(ids_array(record_ids)):
        raise StoreError(
            f"{store} holds {len(stored)} records of another input listing (this input has "
            f"{len(record_ids)}, or in another order). Write to another path, or pass "
            "overwrite=True (--overwrite) to start over."
        )
