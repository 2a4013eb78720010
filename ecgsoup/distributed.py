"""Scale-out: embedding an ECG collection on a Dask cluster.

``embed_to_store(..., client=Client(...))`` (or ``ecgsoup embed --scheduler
ADDRESS`` / ``--workers N``) cuts the records still to do into blocks of
``chunk_size`` and runs each block as one Dask task:

* **Workers read their own records** from the input path, so the input (the
  WFDB folder, PTB-XL root or ``.npz``) must be visible at the same path on
  every worker (a shared file system or mount).  Only the block's list of
  record paths travels with a task.
* **Each worker loads the model once**: the fitted embedder is cached per
  worker process (:func:`ecgsoup.store._fitted_embedder`, keyed by model path,
  file signature and settings), and its sha256 is checked against the one
  the client computed, so a worker with other weights at the same path
  fails loudly.  An encoder *object* is scattered to the workers once.
* **The client writes the store.**  Workers return each block's pooled
  embeddings (``chunk_size x n_layers x dim`` float32, ~2.5 MB for 256 records
  of the tiny model) and the client writes them as blocks complete.  This was
  chosen over workers writing zarr regions themselves because it needs no
  shared *writable* file system, never lets two processes touch one zarr
  chunk, and keeps the status array (what makes a run resumable) updated by
  a single writer, strictly after the embeddings it vouches for.  The
  client's bandwidth is not the bottleneck: the tiny model produces ~10 kB
  per record, against tens of milliseconds of compute per record.
* **Bounded memory.**  At most ``max_in_flight`` blocks (default: 2 per
  worker thread) are submitted at a time, so neither the scheduler nor the
  client holds more than a few blocks' results.

Workers started by Dask's nanny get ``OMP_NUM_THREADS=1`` by default, so
torch uses one thread per worker: start one single-threaded worker process
per core (``dask worker --nworkers <cores> --nthreads 1``).
"""

from __future__ import annotations

import contextlib
import itertools
import os

__all__ = ["run_blocks", "connect"]


def _client_class():
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError(
            "Distributed embedding needs dask.distributed: pip install 'ecgsoup[dask]'."
        ) from None
    return Client


@contextlib.contextmanager
def connect(scheduler=None, workers=None):
    """A Dask client for ``--scheduler ADDRESS`` or a local ``--workers N`` cluster.

    Parameters
    ----------
    scheduler : str, default=None
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    workers : int, default=None
        Start a ``LocalCluster`` of this many single-threaded worker
        processes instead (closed on exit).

    Yields
    ------
    client : dask.distributed.Client or None
        ``None`` when neither is given (embed in this process).
    """
    if scheduler is not None and workers is not None:
        raise ValueError("Pass either a scheduler address or a number of local workers, not both.")
    if scheduler is None and workers is None:
        yield None
        return
    Client = _client_class()
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise ValueError(f"Cannot reach the Dask scheduler at {scheduler!r} ({exc}).") from None
        with client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"workers={workers!r}; expected a positive number of worker processes.")
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        yield client


def run_blocks(client, tasks, write, *, model, settings, fingerprint, lead_map, pad, max_in_flight=None):
    """Run ``ecgsoup.store._embed_block`` for every task on ``client``; ``write`` each result.

    Parameters
    ----------
    client : dask.distributed.Client
    tasks : list of (spec, items, record_ids, rows)
        One block each (see :func:`ecgsoup.store.embed_to_store`).
    write : callable
        Called in this process with each block's result, in completion order.
    model, settings, fingerprint, lead_map, pad
        Passed to every task.  An ``STMEMEncoder`` ``model`` is scattered
        (broadcast) once instead of being pickled into every task.
    max_in_flight : int, default=None
        Blocks submitted at a time; ``None`` means twice the cluster's threads.

    Raises
    ------
    Exception
        The first task failure that is not a bad record (bad records are
        results, not failures); outstanding tasks are cancelled.
    """
    from dask.distributed import as_completed

    from ecgsoup.models import STMEMEncoder
    from ecgsoup.store import _embed_block

    if not tasks:
        return
    if isinstance(model, STMEMEncoder):
        model = client.scatter(model, broadcast=True, hash=False)
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = 2 * threads
    pending = iter(tasks)

    def submit(task):
        spec, items, ids, rows = task
        return client.submit(
            _embed_block, spec, items, ids, rows, model, settings, fingerprint, lead_map, pad,
            pure=False, key=f"ecgsoup-embed-{os.getpid()}-{int(rows[0])}-{id(task):x}",
        )  # fmt: skip

    inflight = {submit(task) for task in itertools.islice(pending, max_in_flight)}
    queue = as_completed(inflight)
    try:
        for future in queue:
            result = future.result()  # re-raises a worker's exception here
            inflight.discard(future)
            future.release()
            write(result)
            task = next(pending, None)
            if task is not None:
                new = submit(task)
                inflight.add(new)
                queue.add(new)
    except BaseException:
        client.cancel(list(inflight))
        raise
