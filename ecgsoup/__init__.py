"""ecgsoup: frozen, pretrained ECG foundation models as scikit-learn features.

Every layer of a backbone (ST-MEM, HuBERT-ECG, ECGFounder) in one forward
pass, and the ECG-Soup ways of combining them (layer selection, PPA, PMA), as
estimators that fit in ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.
"""

from ecgsoup._version import __version__
from ecgsoup.backbones import list_backbones, load_backbone, random_backbone
from ecgsoup.backbones.stmem import load_model, random_model
from ecgsoup.embedding import LayerwiseEmbedder
from ecgsoup.features import ECGFeatures
from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.io import load_sample
from ecgsoup.pma import PMA, PMAClassifier
from ecgsoup.preprocessing import ECGPreprocessor
from ecgsoup.store import embed_to_store, open_store

__all__ = [
    "__version__",
    "ECGFeatures",
    "ECGPreprocessor",
    "LayerSelector",
    "LayerwiseEmbedder",
    "PMA",
    "PMAClassifier",
    "PPA",
    "embed_to_store",
    "list_backbones",
    "load_backbone",
    "load_model",
    "load_sample",
    "open_store",
    "random_backbone",
    "random_model",
]
