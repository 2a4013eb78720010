"""Masked pretraining of ST-MEM encoders (ST-MEM and IPA-ST-MEM objectives)."""

from ecgsoup.pretraining.data import load_pretraining_arrays
from ecgsoup.pretraining.mae import AGGREGATIONS, OBJECTIVES, MaskedAutoencoder
from ecgsoup.pretraining.trainer import (
    PretrainSettings,
    compact_checkpoint,
    load_checkpoint,
    lr_at_step,
    pretrain,
)

__all__ = [
    "AGGREGATIONS",
    "OBJECTIVES",
    "MaskedAutoencoder",
    "PretrainSettings",
    "compact_checkpoint",
    "load_checkpoint",
    "load_pretraining_arrays",
    "lr_at_step",
    "pretrain",
]
