"""Reading a store back: the embedded records as a matrix, with what its columns are."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ecgsoup.store._backends import open_backend, read_notes
from ecgsoup.store._errors import StoreDamageWarning, StoreError
from ecgsoup.store._schema import DONE, FAILED, PENDING
from ecgsoup.store._verify import check_store

__all__ = ["StoredEmbeddings", "open_store"]


class StoredEmbeddings(NamedTuple):
    """What :func:`open_store` returns; unpacks as ``X, record_ids, attrs, errors``.

    Attributes
    ----------
    X : ndarray of shape (n_done, n_features), float32
        Embedded records only, ``[h_0 | ... | h_L]`` as ``layer_spec``
        describes: feed it to ``PPA(layer_spec=stored.layer_spec)``,
        ``LayerSelector``, ``PMA`` or :func:`ecgsoup.evaluate.layer_probe`.
    record_ids : list
        Identifier of each row of ``X``.
    attrs : dict
        The store's attributes (model config, ``model_sha256``,
        ``ecgsoup_version``, ``precision``, ``n_layers``, ``n_features``,
        ``layer_spec``, ...), the
        counts ``n_records``, ``n_done``, ``n_failed``, ``n_pending``, and
        the per-record notes: ``quality_notes`` (``{record_id: note}`` of
        signals that do not look like an ECG) and
        ``records_with_derived_leads`` (``{record_id: ["III", "aVR", ...]}``
        of records whose limb leads were computed from I and II; the rule
        is in ``derived_leads``).
    errors : pandas.DataFrame
        ``record_id``, ``message`` of every record that failed.

    The property ``layer_spec`` (a :class:`~ecgsoup.layers.LayerSpec`) says
    what the columns of ``X`` are: layer names and widths, the model's
    readout, and its sha256 as model id.
    """

    X: np.ndarray
    record_ids: list
    attrs: dict
    errors: pd.DataFrame

    @property
    def layer_spec(self):
        """What the columns of ``X`` are (built from ``attrs["layer_spec"]``)."""
        from ecgsoup.layers import LayerSpec

        return LayerSpec.from_dict(self.attrs["layer_spec"])

    def __repr__(self) -> str:
        a = self.attrs
        model = a.get("model_name") or (a.get("config") or {}).get("name") or "?"
        return (
            f"StoredEmbeddings({a.get('n_done', len(self.record_ids))} of {a.get('n_records', '?')} records "
            f"embedded, {a.get('n_failed', len(self.errors))} failed; {a.get('n_layers', '?')} layers, "
            f"{a.get('n_features', '?')} columns; model {model}, sha256 {str(a.get('model_sha256', '?'))[:12]})"
        )

    def feature_names(self) -> np.ndarray:
        """Column names of ``X``, tagged with the model: ``13fb9067:layer03_dim0127``.

        The tag (the first 8 hex digits of the weights' sha256) lets a fusion
        fitted on one model's frame refuse another model's.
        """
        tag = self.layer_spec.tag
        return np.asarray([f"{tag}:{name}" for name in self.layer_spec.feature_names()], dtype=object)

    def to_frame(self) -> pd.DataFrame:
        """``X`` as a DataFrame indexed by ``record_id``, with :meth:`feature_names` columns."""
        return pd.DataFrame(
            self.X, index=pd.Index(self.record_ids, name="record_id"), columns=self.feature_names()
        )


def open_store(path) -> StoredEmbeddings:
    """Read an embedding store written by :func:`embed_to_store` / ``ecgsoup embed``.

    Parameters
    ----------
    path : str or Path
        A ``.zarr`` directory or an ``.npz`` file.

    Returns
    -------
    stored : StoredEmbeddings
        ``(X, record_ids, attrs, errors)``; see :class:`StoredEmbeddings`.
        Only records whose embedding is complete are in ``X``; a store with
        pending records (an interrupted run) gives a warning naming how many.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    StoreError
        If ``path`` is not an ecgsoup embedding store.

    Examples
    --------
    >>> from ecgsoup.store import open_store                    # doctest: +SKIP
    >>> stored = open_store("ptbxl.zarr")                      # doctest: +SKIP
    >>> from ecgsoup.fusion import PPA                          # doctest: +SKIP
    >>> PPA(layer_spec=stored.layer_spec).fit_transform(stored.X).shape  # doctest: +SKIP
    (21799, 192)
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such embedding store.")
    backend = open_backend(path, mode="r")
    check = _verified(path, backend)
    status, record_ids, embeddings = check.status, check.record_ids, check.embeddings
    done = np.flatnonzero(status == DONE)
    spec = _layer_spec_of(backend)
    X = np.ascontiguousarray(np.asarray(embeddings).reshape(len(done), -1), dtype=np.float32)
    failed = np.flatnonzero(status == FAILED)
    messages = check.messages
    errors = pd.DataFrame(
        {"record_id": [record_ids[i] for i in failed], "message": [str(messages[i]) for i in failed]}
    )
    attrs = dict(backend.attrs)
    counts = dict(
        n_records=len(status),
        n_done=int(done.size),
        n_failed=int(failed.size),
        n_pending=int((status == PENDING).sum()) - len(check.damaged),
        n_damaged=len(check.damaged),
    )
    attrs.update(counts)
    notes = read_notes(backend, "quality", status == DONE)
    attrs["quality_notes"] = {record_ids[i]: note for i, note in notes.items()}
    attrs["n_flagged"] = len(notes)
    derived = read_notes(backend, "derived_leads", status == DONE)
    attrs["records_with_derived_leads"] = {record_ids[i]: leads.split(", ") for i, leads in derived.items()}
    if check.damaged:
        warnings.warn(check.damage_message(path), StoreDamageWarning, stacklevel=2)
    if counts["n_pending"]:
        warnings.warn(
            f"{path} is incomplete: {counts['n_pending']} of {counts['n_records']} records are not "
            "embedded yet (an interrupted or --limit run). Run `ecgsoup embed` again with the same "
            "input and --out to finish; only the missing records are computed.",
            stacklevel=2,
        )
    attrs["layer_spec"] = spec.to_dict()  # version-1 stores: rebuilt from their norm arrays
    return StoredEmbeddings(X, [record_ids[i] for i in done], attrs, errors)


def _layer_spec_of(backend):
    """The store's layer specification (rebuilt from the norm arrays of version-1 stores)."""
    from ecgsoup.layers import LayerInfo, LayerSpec, Readout

    attrs = backend.attrs
    if attrs.get("format_version") == 1:
        n_layers, dim = int(attrs["n_layers"]), int(attrs["dim"])
        readout = Readout("layernorm", np.asarray(backend.read("norm_weight"), np.float32),
                          np.asarray(backend.read("norm_bias"), np.float32), 1e-5)  # fmt: skip
        layers = tuple(LayerInfo(f"layer{i:02d}", dim) for i in range(n_layers))
        return LayerSpec(str(attrs["model_sha256"]), layers, readout, str(attrs.get("model_name", "")))
    return LayerSpec.from_dict(attrs["layer_spec"])


def _verified(path: Path, backend):
    """Every chunk of the store read and checked (:func:`check_store`); whole-store damage refused."""
    check = check_store(backend)
    if check.problems or check.id_problems:
        raise StoreError(
            f"{path} is a damaged ecgsoup store ({'; '.join(check.id_problems + check.problems)}). Run `ecgsoup embed` again "
            "with the same input and --out to repair it, or start it over with overwrite=True (--overwrite)."
        )
    return check
