"""What every sub-command shares: exit statuses, the user error, output folders, one-line errors."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "CLIError",
    "WarningSummary",
    "check_positive",
    "error_line",
    "locked_output",
    "output_folder",
]

EXIT_OK = 0
# Some records failed: bad input the user can fix, each one listed; the same status as any other
# problem the user can fix, so that a script checking for 0 notices either.
EXIT_PARTIAL = 2
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def check_positive(name, value) -> None:
    """Refuse a count option below 1 (``None`` passes: the option's own default applies)."""
    if value is not None and value < 1:
        raise CLIError(f"{name} must be a positive number, got {value}.")


def output_folder(option: str, out) -> Path:
    """An output folder checked before any work: a folder (or a new name), and writable.

    A run that computes for minutes and then finds it cannot write its
    results loses them; the check makes a test file and removes it.
    """
    import tempfile

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"{option} {out} is an existing file, not a folder; choose a folder name.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".ecgsoup-write-test-"):
            pass
    except OSError as error:
        raise CLIError(f"{option} {out}: cannot write there ({error.strerror or error}); choose a writable "
                       "folder.") from None  # fmt: skip
    return out


@contextlib.contextmanager
def locked_output(option: str, out: Path, command: str):
    """Hold ``out``'s lock for the whole run: a second run writing the same files is refused at once."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(out / ".ecgsoup.lock"), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise CLIError(f"{option} {out} is being written by another ecgsoup {command} run; wait for it, or "
                       "choose another folder.") from None  # fmt: skip
    try:
        yield out
    finally:
        lock.release()


class WarningSummary:
    """Collect the warnings of a block; afterwards print one line per kind on stderr.

    A probe over many records and layers repeats the same warning hundreds of
    times (an undefined AUC per fold, a skipped record each ...): one line
    with the count and the first message says the same.
    """

    def __init__(self, command):
        self.command = command

    def __enter__(self):
        self._manager = warnings.catch_warnings(record=True)
        self.caught = self._manager.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._manager.__exit__(*exc)
        from ecgsoup.store import SkippedRecordWarning

        kinds: dict = {}
        for caught in self.caught:
            kinds.setdefault(caught.category, []).append(str(caught.message).strip().splitlines()[0][:300])
        for category, messages in kinds.items():
            if issubclass(category, SkippedRecordWarning):
                line = f"{len(messages)} record(s) could not be embedded and are left out; first: {messages[0]}"
            elif len(messages) == 1:
                line = f"{category.__name__}: {messages[0]}"
            else:
                line = f"{category.__name__} x{len(messages)} (shown once): {messages[0]}"
            print(f"ecgsoup {self.command}: {line}", file=sys.stderr)
        return False


# What to do about an operating-system error, by errno.
_OS_FIXES = {
    "EACCES": "choose a location you can write to", "EPERM": "choose a location you can write to",
    "EROFS": "the file system is read-only: choose another location",
    "ENOSPC": "the disk is full: free some space or write elsewhere",
    "EDQUOT": "the disk quota is used up: free some space or write elsewhere",
    "ENAMETOOLONG": "use a shorter name", "EISDIR": "name a file, not a folder",
    "ENOTDIR": "a part of the path is a file, not a folder", "ENOENT": "check the path",
}  # fmt: skip


def error_line(error: BaseException) -> str:
    """One line for an error the sub-command did not anticipate: what, where, and the fix when known."""
    import errno

    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, "")
        where = f"{error.filename}: " if error.filename else ""
        fix = _OS_FIXES.get(name)
        return f"{where}{error.strerror or error}" + (f"; {fix}." if fix else ".")
    if isinstance(error, MemoryError):
        return "out of memory; the input or a setting is larger than this machine can hold."
    text = (str(error).strip().splitlines() or [""])[0][:500]
    if isinstance(error, ValueError) and text:
        return text
    return (f"{type(error).__name__}: {text} " if text else f"{type(error).__name__} ") + (
        "(unexpected; set ECGSOUP_TRACEBACK=1 to see where, and report it)")
