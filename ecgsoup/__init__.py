"""ecgsoup: a frozen, pretrained ECG transformer as scikit-learn features.

Every layer of an ST-MEM Vision Transformer in one forward pass, and the
ECG-Soup ways of combining them (layer selection, PPA, PMA), as estimators
that fit in ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.
"""

__version__ = "0.1.0"
