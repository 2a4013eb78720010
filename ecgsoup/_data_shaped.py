"""The data-shaped ``model="random"``: an untrained tiny ST-MEM built for the input's shape.

Generic tabular input (what scikit-learn's estimator checks feed, what a unit
test makes up) fits no ECG contract; ``model="random"`` builds a randomly
initialised tiny encoder whose leads, window and patch fit it, so that the
estimators stay testable on such data.  It has no medical meaning.  Named
models, ``"random:<name>"`` included, never change shape.
"""

from __future__ import annotations

from ecgsoup.backbones.stmem import get_config
from ecgsoup.backbones.stmem.config import EncoderConfig

__all__ = ["RANDOM_MODEL", "RANDOM_SEED", "data_shaped_config", "pads_batches"]

RANDOM_MODEL = "random"
RANDOM_SEED = 0
_BASE_CONFIG = "ecgsoup-100hz-tiny"
# Token count (leads x (patches + 2)) up to which an ST-MEM is a toy shape.
_PAD_BELOW_TOKENS = 32


def data_shaped_config(shape) -> EncoderConfig:
    """Configuration of the ``"random"`` model for input of ``shape`` (2-D flat or 3-D).

    Input that fits the 12-lead, 1000-sample contract gets the tiny model's
    own configuration.  Otherwise a flat ``(n, F)`` array is read as one lead
    of ``F`` samples (unless ``F`` splits into 12 leads of at least 1000
    samples), 3-D ``(n, C, T)`` as ``C`` leads; the window is
    ``min(T, 1000)`` samples and the patch the largest divisor of it up to 50.
    """
    base = get_config(_BASE_CONFIG)
    if len(shape) == 3:
        leads, length = shape[1], shape[2]
    elif shape[1] % base.n_leads == 0 and shape[1] // base.n_leads >= base.n_samples:
        leads, length = base.n_leads, shape[1] // base.n_leads
    else:
        leads, length = 1, shape[1]
    if leads == base.n_leads and length >= base.n_samples:
        return base
    window = min(length, base.n_samples)
    patch = max(d for d in range(1, min(window, base.patch_size) + 1) if window % d == 0)
    if leads <= base.n_leads:
        lead_names = base.lead_names[:leads]
    else:
        lead_names = tuple(f"ch{i}" for i in range(leads))
    return base.replace(
        name=f"random-shaped-{leads}x{window}-patch{patch}",
        n_samples=window,
        patch_size=patch,
        lead_names=lead_names,
    )


def pads_batches(config) -> bool:
    """Whether the embedder pads every batch of ``config``'s model to ``batch_size`` windows.

    With very short token sequences (the toy shapes this module builds, not
    real ECG models) the matrix products are so small that BLAS picks its
    kernel by row count, and a record's numbers would depend on how many
    windows share its batch (~1e-6).  Padding every batch to ``batch_size``
    windows keeps them identical at negligible cost there.  Real models (12
    leads x 22 tokens and more) are batch-size invariant without it.
    """
    if not isinstance(config, EncoderConfig):
        return False
    return config.n_leads * (config.n_patches + 2) <= _PAD_BELOW_TOKENS
