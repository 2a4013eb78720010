"""Record identifiers: checked when read from a table or a file, and turned back into plain lists."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["check_ids", "ids_list"]


def check_ids(values, where: str, numeric_text=True) -> list:
    """Record ids as ints where they are whole numbers (``"00841"`` -> 841), else stripped text.

    With ``numeric_text=False`` text ids stay text (only whole floats become ints).

    Refuses an empty id (a blank or ``NaN`` cell) and an id given to two
    records, naming the rows: either would put two recordings under one id, or
    label one recording with another's labels.
    """
    ids, empty, rows = [], [], {}
    for i, value in enumerate(values):
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if value is None or (number and not np.isfinite(value)):
            text = ""
        elif number and float(value).is_integer():
            text = str(int(value))
        else:
            text = str(value).strip()
        if not text:
            empty.append(i)
        rid = int(text) if (numeric_text or number) and re.fullmatch(r"-?\d{1,18}", text) else text
        ids.append(rid)
        rows.setdefault(rid, []).append(i)
    if empty:
        raise ValueError(
            f"{where} has {len(empty)} empty id(s) (row(s) {', '.join(str(i + 1) for i in empty[:5])} of "
            "the data); every record needs an id: fill them in or remove those rows."
        )
    shared = {rid: r for rid, r in rows.items() if len(r) > 1}
    if shared:
        examples = "; ".join(
            f"{rid!r} in rows {', '.join(str(i + 1) for i in r[:3])}" for rid, r in list(shared.items())[:3]
        )
        raise ValueError(
            f"{where} gives {len(shared)} id(s) to several records ({examples}); ids must be unique: "
            "remove or renumber the duplicate rows."
        )
    return ids


def ids_list(array) -> list:
    """Stored record ids (a numpy array) as a list of Python ``int`` (integer ids) or ``str`` (any other)."""
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return [int(v) for v in array]
    return [str(v) for v in array]
