"""Scale-out: embedding an ECG collection on a Dask cluster.

``embed_to_store(..., client=Client(...))`` (or ``ecgsoup embed --scheduler
ADDRESS`` / ``--workers N``) cuts the records still to do into chunks of
``chunk_size`` and runs each chunk as one Dask task.  This module opens the
client (:func:`connect`) and schedules the chunks (:func:`run_chunks`);
:mod:`ecgsoup.store` owns the store (formats, lock, resume) and the task each
chunk runs (:func:`ecgsoup.store.embed_chunk`), and imports this module only
when it is given a client.

* **Workers read their own records** from the input path, so the input (the
  WFDB folder, PTB-XL root or ``.npz``) must be visible at the same path on
  every worker (a shared file system or mount).  Only the chunk's list of
  record paths travels with a task.
* **Each worker loads the model once**: the fitted embedder is cached per
  worker process (:func:`ecgsoup.store.fitted_embedder`, keyed by model path,
  file signature and settings), and its sha256 is checked against the one
  the client computed, so a worker with other weights at the same path
  fails loudly.  An encoder *object* is scattered to the workers once.
* **The client writes the store.**  Workers return each chunk's pooled
  embeddings (``chunk_size x n_features`` float32, ~0.6 MB for the default 64
  records of the tiny model) and the client writes them as chunks complete.
  Workers do not write zarr regions themselves: this needs no
  shared *writable* file system, never lets two processes touch one zarr
  chunk, and keeps the status array (what makes a run resumable) updated by
  a single writer, strictly after the embeddings it vouches for.  The
  client's bandwidth is not the bottleneck: the tiny model produces ~10 kB
  per record, against tens of milliseconds of compute per record.
  The client also holds the store's lock for the whole run.
* **Bounded memory.**  At most ``max_in_flight`` chunks (default: 2 per
  worker thread) are submitted at a time, so neither the scheduler nor the
  client holds more than a few chunks' results.

Workers started by Dask's nanny get ``OMP_NUM_THREADS=1`` by default, so
torch uses one thread per worker: start one single-threaded worker process
per core (``dask worker --nworkers <cores> --nthreads 1``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import time
import warnings

from ecgsoup.store import embed_chunk, embed_to_store

__all__ = ["run_chunks", "connect", "embed_to_store", "SCHEDULER_TIMEOUT_S"]

SCHEDULER_TIMEOUT_S = 30.0  # one deadline for reaching a scheduler and reading its greeting
# A scheduler's greeting (its handshake) is a few hundred bytes; Dask allocates whatever length
# the first 8 bytes give, so a longer claim is refused before Dask reads it.
_GREETING_MAX_BYTES = 2**20
_DEFAULT_PORT = 8786


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp://`` (or scheme-less) address; None for other protocols (tls, ucx, inproc)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme != "tcp":
        return None
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or "]" in port:
        host, port = rest, str(_DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Dask scheduler address {address!r} is not HOST:PORT (e.g. tcp://10.0.0.5:8786).")
    return host, int(port)


def _receive(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection was closed")
        data += chunk
    return data


def _check_scheduler(address: str, timeout: float) -> float:
    """Refuse a peer that does not greet like a Dask scheduler within ``timeout`` s; return the time left.

    A scheduler sends its handshake as soon as a client connects: 8 bytes
    giving the message's length, then the message.  Dask trusts that length
    and allocates it, so a peer answering HTTP or garbage makes it allocate
    exbibytes, and a peer that accepts and never answers makes it wait.  A
    plain socket reads the greeting here first, under one deadline.
    """
    deadline = time.monotonic() + timeout
    where = _host_port(address)
    if where is None:
        return timeout
    try:
        with socket.create_connection(where, timeout=timeout) as sock:
            head = _receive(sock, 8, deadline)
            (length,) = struct.unpack("<Q", head)
            if not 8 <= length <= _GREETING_MAX_BYTES:
                raise ValueError(
                    f"The peer at {address!r} is not a Dask scheduler: its first bytes {head!r} claim a "
                    f"{length}-byte message. Check the address and port (the scheduler prints it on start)."
                )
            body = _receive(sock, length, deadline)
            (n_frames,) = struct.unpack("<Q", body[:8])
            if not 1 <= n_frames <= 64:
                raise ValueError(f"The peer at {address!r} is not a Dask scheduler (its greeting is malformed). "
                                 "Check the address and port.")  # fmt: skip
    except TimeoutError:
        raise ValueError(
            f"No Dask scheduler answered at {address!r} within {timeout:g} s (the peer accepted the connection, "
            "or was still being reached, and sent nothing). Check the address and port."
        ) from None
    except OSError as exc:
        raise ValueError(f"Cannot reach the Dask scheduler at {address!r} ({exc.strerror or exc}).") from None
    return max(deadline - time.monotonic(), 1.0)


def run_chunks(client, tasks, write, *, model, settings, fingerprint, lead_map, pad, poor_signals="flag",
               max_in_flight=None):  # fmt: skip
    """Run every chunk of ``tasks`` on a Dask ``client``; ``write`` each result here, as it completes.

    What :func:`ecgsoup.store.embed_to_store` does with a ``client``: workers
    read and embed their chunks (:func:`ecgsoup.store.embed_chunk`), this
    process alone writes the store.

    Parameters
    ----------
    client : dask.distributed.Client
    tasks : list of (source, items, record_ids, rows)
        One chunk each (see :func:`~ecgsoup.store.embed_to_store`); ``source`` is an
        :class:`ecgsoup.io.RecordSource`.
    write : callable
        Called in this process with each chunk's result, in completion order.
    model, settings, fingerprint, lead_map, pad, poor_signals
        Passed to every task.  An ``STMEMEncoder`` ``model`` is scattered
        (broadcast) once instead of being pickled into every task.
    max_in_flight : int, default=None
        Chunks submitted at a time; ``None`` means twice the cluster's threads.

    Raises
    ------
    Exception
        The first task failure that is not a bad record (bad records are
        results, not failures); outstanding tasks are cancelled, as they are
        on Ctrl-C.
    """
    from dask.distributed import as_completed

    from ecgsoup.backbones.stmem import STMEMEncoder

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
            embed_chunk, spec, items, ids, rows, model, settings, fingerprint, lead_map, pad, poor_signals,
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


def __getattr__(name):
    if name == "run_blocks":
        warnings.warn(
            "ecgsoup.distributed.run_blocks is deprecated and will be removed in the next release; "
            "use ecgsoup.distributed.run_chunks.",
            FutureWarning,
            stacklevel=2,
        )
        return run_chunks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _client_class():
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError(
            "Distributed embedding needs dask.distributed: pip install 'ecgsoup[dask]'."
        ) from None
    return Client


@contextlib.contextmanager
def connect(scheduler=None, workers=None, timeout=None):
    """A Dask client for ``--scheduler ADDRESS`` or a local ``--workers N`` cluster.

    Parameters
    ----------
    scheduler : str, default=None
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    workers : int, default=None
        Start a ``LocalCluster`` of this many single-threaded worker
        processes instead (closed on exit).
    timeout : float, default=None
        Seconds allowed for reaching the scheduler and reading its greeting
        (None: ``SCHEDULER_TIMEOUT_S``, 30 s).  A peer that is not a Dask
        scheduler (an HTTP server, garbage, silence) is refused within it.

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
        left = _check_scheduler(str(scheduler), SCHEDULER_TIMEOUT_S if timeout is None else float(timeout))
        try:
            client = Client(scheduler, timeout=f"{left:.0f}s")
        except OSError as exc:
            raise ValueError(f"Cannot reach the Dask scheduler at {scheduler!r} ({exc}).") from None
        with client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"workers={workers!r}; expected a positive number of worker processes.")
    import logging

    from dask.distributed import LocalCluster

    quiet = logging.getLogger("distributed")
    level = quiet.level
    try:
        with _workers_ignore_ctrl_c():
            # Workers log errors only: on Ctrl-C each one warns about its cancelled task otherwise.
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        with cluster, Client(cluster) as client:
            try:
                yield client
            except KeyboardInterrupt:
                # The workers are stopped on purpose: Dask's warnings while closing them are noise.
                quiet.setLevel(logging.CRITICAL)
                raise
    finally:
        quiet.setLevel(level)


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start processes that ignore SIGINT: Ctrl-C reaches the whole process group.

    A terminal's Ctrl-C goes to every process of the foreground group, so each
    worker would print its own KeyboardInterrupt traceback.  An ignored signal
    stays ignored in a child across exec (and Python then installs no handler),
    so the workers leave the interrupt to this process, which stops them and
    says what was saved, in one line.  A Ctrl-C during the few seconds the
    workers start is ignored too.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
