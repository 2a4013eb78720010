"""Lead names: the two orders in use and the spellings found in real files.

Leads are always matched by *name*, never by position: the shared data, WFDB
files and PTB-XL store ``I, II, III, aVR, aVL, aVF, V1..V6`` while the ECG-Soup
model's lead embeddings follow ``I, II, V1..V6, III, aVR, aVL, aVF``.
"""

from __future__ import annotations

__all__ = [
    "STANDARD_LEAD_ORDER",
    "ECGSOUP_LEAD_ORDER",
    "canonical_lead_name",
    "canonical_lead_names",
]

STANDARD_LEAD_ORDER = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

ECGSOUP_LEAD_ORDER = (
    "I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF",
)  # fmt: skip

# Upper-cased spelling -> canonical name.  Files write "AVR", "avr", "MLII", ...
_ALIASES = {name.upper(): name for name in STANDARD_LEAD_ORDER}
_ALIASES.update({"MLI": "I", "MLII": "II", "MLIII": "III"})


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical spelling of a 12-lead name, or None if it is not one.

    >>> canonical_lead_name("avr"), canonical_lead_name("MLII"), canonical_lead_name("vx")
    ('aVR', 'II', None)
    """
    return _ALIASES.get(str(name).strip().upper())


def canonical_lead_names(names) -> tuple[str, ...]:
    """Canonical spellings for a sequence of names; unknown names are kept as given."""
    return tuple(canonical_lead_name(n) or str(n).strip() for n in names)
