"""Clinical features and foundation-model embeddings side by side, each block balanced.

:func:`hybrid_features` builds one scikit-learn transformer that feeds the
same raw ECGs to :class:`~ecgsoup.features.ECGFeatures` (14 clinical
measurements) and to an embedding pipeline (preprocessor, frozen backbone,
layer choice: 192 dimensions for the bundled model), and concatenates the
two.  Without care the 192 embedding columns would drown the 14 features in
any distance- or penalty-based model, so every block is standardised and then
scaled by :class:`BlockScaler` to a total variance of 1: each block weighs
the same, whatever its width.
"""

from __future__ import annotations

from numbers import Integral

from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup.blocks import BlockScaler
from ecgsoup.embedding import LayerwiseEmbedder
from ecgsoup.features import ECGFeatures
from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.preprocessing import ECGPreprocessor

__all__ = ["BlockScaler", "balanced_columns", "embedding_block", "hybrid_features"]


def embedding_block(sampling_rate, lead_names, *, model="default", layers="last", memory=None, device="cpu"):
    """Raw time-major ECGs -> one embedding per record: preprocessor, backbone, layer choice.

    Parameters
    ----------
    sampling_rate : float
        Sampling rate of the input in Hz.
    lead_names : sequence of str
        Name of each input lead (last axis).
    model : str, path or STMEMEncoder, default="default"
        The backbone (see :class:`~ecgsoup.embedding.LayerwiseEmbedder`).
    layers : int, list of int, {"last", "middle", ...}, "ppa" or a fusion, default="last"
        Layers kept by :class:`~ecgsoup.fusion.LayerSelector`, or a fusion
        of all layers: ``"ppa"`` (:class:`~ecgsoup.fusion.PPA`) or a fusion
        transformer such as ``PPA()`` or ``LayerSelector(...)``.
    memory : None, str or path, default=None
        Embedding cache of the embedder.
    device : str, default="cpu"
        Where the backbone runs.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
        Steps ``prep`` and ``embed`` (whose ``fusion`` is the layer choice).
        Inside :func:`hybrid_features` it is the step ``encoder`` of the block
        ``embedding`` (parameters ``embedding__encoder__embed__fusion__layers``, ...).
    """
    return Pipeline([
        ("prep", ECGPreprocessor(sampling_rate=sampling_rate, lead_names=lead_names, model=model)),
        ("embed", LayerwiseEmbedder(model=model, memory=memory, device=device, fusion=_fusion(layers))),
    ])  # fmt: skip


def _fusion(layers):
    """A layer choice or a fusion as the embedder's ``fusion`` step."""
    if isinstance(layers, str) and layers.lower() == "ppa":
        return PPA()
    if hasattr(layers, "fit") and hasattr(layers, "transform"):
        return layers
    return LayerSelector(layers=layers)


def hybrid_features(features, embedding="default", *, n_components=None, balance=True, weights=None):
    """One transformer: clinical features and an embedding of the same ECGs, side by side.

    Both blocks receive the same raw input (time-major ECGs, as for
    :class:`~ecgsoup.features.ECGFeatures`), and their outputs are
    concatenated (clinical columns first):

    * clinical: ``features`` -> median imputation of failed measurements
      (``SimpleImputer``; columns that are NaN for every training record are
      kept, filled with 0) -> ``StandardScaler`` -> ``BlockScaler``;
    * embedding: ``embedding`` -> ``StandardScaler`` -> optional
      ``PCA(n_components)`` -> ``BlockScaler``.

    With ``balance=True`` each block ends with a total variance of 1, so 14
    clinical columns weigh as much as 192 embedding columns; ``weights``
    then tilts the balance.

    Parameters
    ----------
    features : ECGFeatures or transformer
        The clinical block, e.g. ``ECGFeatures(sampling_rate=..., lead_names=...,
        units=...)``.
    embedding : "default", "ppa", a fusion or transformer, default="default"
        The embedding block, a transformer from the raw input to one vector
        per record.  ``"default"``: :func:`embedding_block` for the bundled
        model's last layer, with the ``sampling_rate`` and ``lead_names`` of
        ``features``; ``"ppa"`` or a fusion of the layers (``PPA()``,
        ``LayerSelector(layers=6)``): the bundled model with that fusion.
    n_components : int or None, default=None
        Reduce the standardised embedding to this many principal components.
    balance : bool, default=True
        Scale each block to a total variance of 1 (``BlockScaler``).
    weights : dict or None, default=None
        Extra weight per block, e.g. ``{"clinical": 2.0}`` (``FeatureUnion``'s
        ``transformer_weights``; blocks not named keep 1).

    Returns
    -------
    union : sklearn.pipeline.FeatureUnion
        Blocks ``"clinical"`` and ``"embedding"``; output columns are named
        ``clinical__hr_bpm``, ..., ``embedding__layer12_dim0000`` (or
        ``embedding__pca0`` with ``n_components``).

    Examples
    --------
    >>> from ecgsoup import ECGFeatures, load_sample
    >>> from ecgsoup.hybrid import embedding_block, hybrid_features
    >>> ds = load_sample()
    >>> feats = ECGFeatures(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names, units="normalized")
    >>> emb = embedding_block(ds.sampling_rate, ds.lead_names, model="random:ecgsoup-100hz-tiny")
    >>> hybrid = hybrid_features(feats, emb, n_components=8)
    >>> Z = hybrid.fit_transform(ds.X[:20])
    >>> Z.shape                                  # 14 clinical + 8 embedding components
    (20, 22)
    >>> [round(float(Z[:, s].var(axis=0).sum()), 6) for s in (slice(0, 14), slice(14, None))]
    [1.0, 1.0]
    """
    if n_components is not None and (not isinstance(n_components, Integral) or n_components < 1):
        raise ValueError(f"n_components must be a positive int or None, got {n_components!r}.")
    fusion = isinstance(embedding, (PPA, LayerSelector)) or (isinstance(embedding, str) and embedding.lower() == "ppa")
    if isinstance(embedding, str) or fusion:
        if isinstance(embedding, str) and embedding.lower() not in ("default", "ppa"):
            raise ValueError(f"embedding must be 'default', 'ppa', a fusion such as PPA() or a transformer, "
                             f"got {embedding!r}.")  # fmt: skip
        if not isinstance(features, ECGFeatures):
            raise ValueError(f"embedding={embedding!r} reads sampling_rate and lead_names from an ECGFeatures block.")
        layers = embedding if fusion else "last"
        embedding = embedding_block(features.sampling_rate, features.lead_names, layers=layers)
    unknown = set(weights or {}) - {"clinical", "embedding"}
    if unknown:
        raise ValueError(f"weights has unknown blocks {sorted(unknown)}; use 'clinical' and 'embedding'.")
    clinical = [
        ("features", features),
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("scale", StandardScaler()),
    ]
    embedded = [("encoder", embedding), ("scale", StandardScaler())]
    if n_components is not None:
        embedded.append(("pca", PCA(n_components=n_components, svd_solver="full")))
    if balance:
        clinical.append(("balance", BlockScaler()))
        embedded.append(("balance", BlockScaler()))
    return FeatureUnion(
        [("clinical", Pipeline(clinical)), ("embedding", Pipeline(embedded))],
        transformer_weights=dict(weights) if weights else None,
    )


def balanced_columns(widths, *, impute=True):
    """Balance blocks of columns that are already computed (clinical features, embeddings).

    For matrices stacked side by side (``np.hstack([features, embedding])``), the
    same balancing as :func:`hybrid_features` without recomputing either block:
    each block of ``widths[i]`` consecutive columns is imputed (median),
    standardised and scaled to a total variance of 1 by :class:`BlockScaler`.
    Put it in a pipeline before the classifier, so that the statistics are
    learnt on the training folds only.

    Parameters
    ----------
    widths : sequence of int
        Number of columns of each block, in order.
    impute : bool, default=True
        Median-impute NaNs (failed clinical measurements) first.

    Returns
    -------
    transformer : sklearn.compose.ColumnTransformer

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from ecgsoup.hybrid import balanced_columns
    >>> probe = make_pipeline(balanced_columns([14, 192]), LogisticRegression())
    """
    from sklearn.compose import ColumnTransformer

    blocks, start = [], 0
    for i, width in enumerate(widths):
        steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
        blocks.append((f"block{i}", Pipeline([(type(s).__name__.lower(), s) for s in steps]
                                             + [("standardise", StandardScaler()), ("balance", BlockScaler())]),
                       list(range(start, start + int(width)))))  # fmt: skip
        start += int(width)
    return ColumnTransformer(blocks)
