"""Safety of a store run: one writer at a time, and nothing deleted or overwritten that is not a store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ecgsoup._files import atomic_write_text
from ecgsoup.store._backends import is_store
from ecgsoup.store._errors import StoreError, StoreLockedError
from ecgsoup.store._schema import NOTE_COLUMNS, REQUIRED_ARRAYS, STORE_FORMAT

__all__ = ["store_lock", "check_not_input", "refuse_foreign", "remove_store"]


def check_not_input(source, store: Path) -> None:
    """Refuse a store path that is the input, or a folder holding it (overwriting would delete it)."""
    source = Path(source).expanduser()
    if not source.exists():
        return  # listing the input names the problem
    src, out = source.resolve(), store.resolve()
    if src == out:
        raise StoreError(f"--out {store} is the input itself; write the store to another path.")
    if out in src.parents:
        raise StoreError(f"--out {store} contains the input {source}; write the store to another path.")


def refuse_foreign(store: Path, overwrite: bool) -> None:
    what = "folder" if store.is_dir() else "file"
    if overwrite:
        raise StoreError(
            f"Refusing to overwrite {store}: this {what} is not an ecgsoup embedding store (it lacks "
            f"the format={STORE_FORMAT!r} marker). --overwrite replaces only a store that ecgsoup "
            "wrote; remove it yourself or choose another --out."
        )
    raise StoreError(
        f"{store} exists and is not an ecgsoup embedding store (it lacks the format={STORE_FORMAT!r} "
        "marker); choose another --out."
    )


def remove_store(store: Path) -> None:
    """Delete ``store`` only if it carries the ecgsoup marker (and, for zarr, nothing else)."""
    if not is_store(store):
        refuse_foreign(store, overwrite=True)
    if store.is_dir():
        extra = sorted(p.name for p in store.iterdir() if p.name not in {"zarr.json", *NOTE_COLUMNS, *REQUIRED_ARRAYS})
        if extra:
            raise StoreError(
                f"Refusing to overwrite {store}: besides the store it holds {extra[:5]}; move those "
                "out or remove the folder yourself."
            )
        # Renamed first, so an interrupted delete never leaves a half store under the name.
        doomed = Path(tempfile.mkdtemp(prefix=f".{store.name}.removing-", dir=store.parent))
        os.rename(store, doomed / store.name)
        shutil.rmtree(doomed)
    else:
        store.unlink()


def _lock_paths(store: Path) -> tuple[Path, Path]:
    return store.with_name(store.name + ".lock"), store.with_name(store.name + ".lock.json")


@contextlib.contextmanager
def store_lock(store):
    """Hold the writer's lock of ``store``; refuse at once if another process holds it.

    :func:`embed_to_store` holds it for its whole run.  Hold it yourself
    around anything else that changes a store (moving, pruning, copying it
    while no run may write it): a run started meanwhile is refused, naming
    this process.

    The lock is :class:`filelock.FileLock` on ``<store>.lock`` (an OS lock: a
    killed holder releases it).  Beside it, ``<store>.lock.json`` says who
    holds it (pid, host, command, start time), so that a refused writer can
    name the holder; it is removed on release.

    Parameters
    ----------
    store : str or Path
        The store's path (it need not exist yet).

    Raises
    ------
    StoreLockedError
        If another process (or another holder in this one) holds the lock;
        the message names the holder.

    Examples
    --------
    >>> from ecgsoup.store import store_lock               # doctest: +SKIP
    >>> with store_lock("ptbxl.zarr"):                     # doctest: +SKIP
    ...     shutil.copytree("ptbxl.zarr", "backup.zarr")
    """
    from filelock import FileLock, Timeout

    store = Path(store).expanduser()
    lock_path, info_path = _lock_paths(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise StoreLockedError(
            f"{store} is being written by another ecgsoup run ({_describe_holder(info_path)}); wait "
            "for it to finish (then run again to resume), or write to another path."
        ) from None
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python",
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_text(info_path, json.dumps(info))  # a refused writer never reads half of it
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        lock.release()


def _describe_holder(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return "its details are not readable yet"
    return (
        f"pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
        f"{info.get('command')}"
    )
