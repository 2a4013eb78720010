"""Deprecated alias of the verification and repair functions of :mod:`ecgsoup.store`.

Import :func:`~ecgsoup.store.check_store`, :func:`~ecgsoup.store.repair_store`,
:class:`~ecgsoup.store.StoreCheck` and the rest from :mod:`ecgsoup.store`; this
module is removed in the next release.
"""

from __future__ import annotations

import warnings

from ecgsoup.store import (
    DONE,
    FAILED,
    NOTE_COLUMNS,
    PENDING,
    StoreCheck,
    StoreDamageWarning,
    check_store,
    describe_rows,
    repair_store,
    resume_ids,
)

__all__ = ["StoreDamageWarning", "StoreCheck", "check_store", "repair_store", "describe_rows", "resume_ids",
           "NOTE_COLUMNS", "PENDING", "DONE", "FAILED"]  # fmt: skip

warnings.warn(
    "ecgsoup.store_check is deprecated and will be removed in the next release; import its names "
    "from ecgsoup.store.",
    FutureWarning,
    stacklevel=2,
)
