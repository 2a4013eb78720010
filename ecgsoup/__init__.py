"""ecgsoup: frozen, pretrained ECG foundation models as scikit-learn features.

Every layer of a backbone (ST-MEM, HuBERT-ECG, ECGFounder) in one forward
pass, and the ECG-Soup ways of combining them (layer selection, PPA, PMA), as
estimators that fit in ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.
"""

__version__ = "0.1.0"

# Imported after __version__: the embedding cache keys read it.
from ecgsoup.embedding import LayerwiseEmbedder  # noqa: E402
from ecgsoup.features import ECGFeatures  # noqa: E402
from ecgsoup.fusion import PPA, LayerSelector  # noqa: E402
from ecgsoup.io import load_sample  # noqa: E402
from ecgsoup.backbones import list_backbones, load_backbone, random_backbone  # noqa: E402
from ecgsoup.backbones.stmem import load_model, random_model  # noqa: E402
from ecgsoup.pma import PMA, PMAClassifier  # noqa: E402
from ecgsoup.preprocessing import ECGPreprocessor  # noqa: E402
from ecgsoup.store import embed_to_store, open_store  # noqa: E402

__all__ = [
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
