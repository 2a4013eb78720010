"""What a store run raises and warns: refusals, a held lock, Ctrl-C, bad and damaged records."""

from __future__ import annotations


class StoreError(ValueError):
    """A store cannot be used: unknown format, or written with other settings or input."""


class StoreLockedError(StoreError):
    """Another process is writing the store (the message names it)."""


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`embed_to_store`: every finished chunk is saved; run again to resume.

    Attributes
    ----------
    store : str
    n_saved : int
        Records embedded in the store (this run and earlier ones).
    n_records : int
        Records in the input.
    """

    def __init__(self, store, n_saved, n_records):
        self.store, self.n_saved, self.n_records = str(store), int(n_saved), int(n_records)
        super().__init__(
            f"interrupted: {self.n_saved} of {self.n_records} records saved; run the same command "
            "again to resume"
        )


class SkippedRecordWarning(UserWarning):
    """A record could not be embedded; it is marked failed in the store, with the reason."""


class StoreDamageWarning(UserWarning):
    """Records of a store are damaged; they are left out, and the next embedding run redoes them."""
