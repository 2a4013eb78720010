"""Backbones: every supported ECG foundation model behind one layer-wise API.

Each family (ST-MEM, HuBERT-ECG, ECGFounder) provides the same things: an
architecture config, a pure-torch module that yields every layer in one pass
and pools each layer as the original model does, a converter from the original
checkpoint, named input contracts, a readout and a card (licence, source,
citation).  :func:`list_backbones` shows them; :func:`load_backbone` loads any
accepted ``model=`` value.
"""

from ecgsoup.backbones._base import (
    Backbone,
    BackboneCard,
    InputContract,
    LayerInfo,
    Readout,
)
from ecgsoup.backbones._checkpoint import WeightsError, load_strict, sha256_file
from ecgsoup.backbones._format import save_backbone
from ecgsoup.backbones._listing import list_backbones
from ecgsoup.backbones._registry import (
    LicenceNotice,
    families,
    forget_licence_notices,
    load_backbone,
    model_home,
    parse_model,
    random_backbone,
    random_twin,
    resolve_contract,
)

__all__ = [
    "Backbone",
    "BackboneCard",
    "InputContract",
    "LayerInfo",
    "Readout",
    "LicenceNotice",
    "WeightsError",
    "families",
    "forget_licence_notices",
    "list_backbones",
    "load_strict",
    "load_backbone",
    "model_home",
    "parse_model",
    "random_backbone",
    "random_twin",
    "resolve_contract",
    "save_backbone",
    "sha256_file",
]
