"""The per-process memo of fitted embedders: a model is loaded once per process, not once per chunk."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ecgsoup.store._errors import StoreError
from ecgsoup.store._models import files_signature

__all__ = ["fitted_embedder", "embedder_memo_info"]

# Fitted embedders kept per process: the run's model and one more (a second store written from
# the same process) without holding every model ever used in memory.
MAX_EMBEDDERS = 2
_EMBEDDERS: OrderedDict = OrderedDict()
_EMBEDDERS_LOCK = threading.Lock()


def fitted_embedder(model, settings: dict, fingerprint: str | None = None):
    """A fitted :class:`~ecgsoup.embedding.LayerwiseEmbedder`, loaded once per process and reused.

    :func:`~ecgsoup.store.embed_to_store` and every Dask worker get their
    embedder here, so a process loads a model once for all its chunks.  The
    memo is keyed by the model (for a path: also the name, size and
    modification time of its files, so rewritten weights are reloaded) and
    the settings; it keeps the last ``MAX_EMBEDDERS`` (2) embedders.

    Parameters
    ----------
    model : str or Backbone
        As :func:`~ecgsoup.store.embed_to_store` resolves it (absolute paths).
    settings : dict
        ``batch_size``, ``device``, ``precision`` and ``window_stride`` of the
        :class:`~ecgsoup.embedding.LayerwiseEmbedder`.
    fingerprint : str, default=None
        The sha256 of the weights the store is written with.  A process that
        finds other weights at the same path raises :class:`StoreError`
        instead of mixing two models in one store.

    Returns
    -------
    embedder : LayerwiseEmbedder
        Fitted; shared by every caller in this process (do not modify it).
    """
    from ecgsoup.backbones import Backbone, resolve_contract
    from ecgsoup.embedding import LayerwiseEmbedder

    if isinstance(model, Backbone):
        # An object has no path to key on: only its (client-computed) fingerprint identifies it.
        key = None if fingerprint is None else ("encoder", fingerprint, tuple(sorted(settings.items())))
    else:
        key = (model, files_signature(model), tuple(sorted(settings.items())))
    with _EMBEDDERS_LOCK:
        cached = _EMBEDDERS.get(key) if key is not None else None
    if cached is not None and fingerprint in (None, cached.fingerprint_):
        return cached
    contract = resolve_contract(model)
    embedder = LayerwiseEmbedder(model=model, **settings)
    # Fitting only loads the model and checks the shape: one zero window suffices.
    embedder.fit(np.zeros((1, contract.n_leads, contract.window), np.float32))
    if fingerprint is not None and embedder.fingerprint_ != fingerprint:
        raise StoreError(
            f"The model {model!r} loaded here has sha256 {embedder.fingerprint_[:12]}…, but the store "
            f"is being written with {fingerprint[:12]}…: every process must see the same weights "
            "at that path."
        )
    if key is None:  # equal fingerprints mean equal weights: later chunks may reuse it
        key = ("encoder", embedder.fingerprint_, tuple(sorted(settings.items())))
    with _EMBEDDERS_LOCK:
        _EMBEDDERS[key] = embedder
        _EMBEDDERS.move_to_end(key)
        while len(_EMBEDDERS) > MAX_EMBEDDERS:
            _EMBEDDERS.popitem(last=False)
    return embedder



def embedder_memo_info() -> dict:
    """How many fitted embedders this process holds (``"embedders"``), and the bound (``"max_embedders"``).

    On a Dask cluster, ``client.run(embedder_memo_info)`` shows that each
    worker loaded the model once.
    """
    with _EMBEDDERS_LOCK:
        return {"embedders": len(_EMBEDDERS), "max_embedders": MAX_EMBEDDERS}
