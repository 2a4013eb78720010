"""Finding records on disk: WFDB record stems and every file below a folder, in natural order."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["SIGNAL_SUFFIXES", "record_stem", "natural_key", "walk_files", "walk_headers", "record_stems"]

# Extensions of the files of one WFDB record; the record is named by the stem without them.
SIGNAL_SUFFIXES = (".hea", ".dat", ".mat", ".xyz")


def record_stem(path) -> Path:
    """A WFDB record's path without the extension of one of its files (``A0001.hea`` -> ``A0001``)."""
    path = Path(path).expanduser()
    return path.with_suffix("") if path.suffix.lower() in SIGNAL_SUFFIXES else path


def natural_key(path: Path):
    """Sort key putting "2" before "10", as LUDB and MIT-BIH number their records."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def walk_files(root: Path) -> list[Path]:
    """Every file below ``root``, following symlinked sub-folders, each folder visited once.

    ``Path.rglob`` does not enter symlinked folders, which would silently leave
    out the records behind one.  Folders are identified by device and inode, so a link
    back up the tree (a loop) or two links to one folder do not list a record twice.
    """
    seen: set = set()
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:
            subfolders[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            subfolders[:] = []  # a loop, or a second way into a folder already listed
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders.sort()
        found.extend(Path(folder) / name for name in files)
    return found


def walk_headers(root: Path) -> list[Path]:
    """Every ``*.hea`` stem below ``root`` (symlinked sub-folders followed, see :func:`walk_files`)."""
    found = [file.with_name(file.name[: -len(".hea")]) for file in walk_files(root) if file.name.endswith(".hea")]
    return sorted(found, key=natural_key)


def record_stems(path: Path) -> list[Path]:
    """Record stems under ``path``: one record, or every ``.hea`` in a folder tree (symlinks followed)."""
    if path.is_dir():
        return walk_headers(path)
    stem = record_stem(path)
    if stem.with_suffix(".hea").exists():
        return [stem]
    raise FileNotFoundError(
        f"{path}: neither a folder nor a WFDB record (no {stem.with_suffix('.hea').name} found)."
    )
