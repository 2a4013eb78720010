"""Deprecated alias of :mod:`ecgsoup.io.hospital`, the readers of hospital ECG exports.

Import from ``ecgsoup.io.hospital`` instead; this alias is removed in the next release.
"""

from __future__ import annotations

import warnings

from ecgsoup.io.hospital import FORMATS, MAX_FILE_BYTES, detect_format, file_id, read_file

__all__ = ["FORMATS", "MAX_FILE_BYTES", "detect_format", "file_id", "read_file"]

warnings.warn(
    "ecgsoup.hospital is deprecated and will be removed in the next release; "
    "import from ecgsoup.io.hospital instead.",
    FutureWarning,
    stacklevel=2,
)
