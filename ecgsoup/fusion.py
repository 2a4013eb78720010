"""Parameter-free ways of turning layer-wise embeddings into one feature vector.

Both estimators here read the 2-D layout of :mod:`ecgsoup.layout`::

    [ h_0 | h_1 | ... | h_L | norm_weight | norm_bias ]      each block `dim` wide

and never run the backbone, so a grid search over their parameters costs
milliseconds: ``GridSearchCV(Pipeline([("select", LayerSelector()), ("clf",
LogisticRegression())]), {"select__layers": range(1, 13)})`` embeds once.

``norm="carried"`` applies the backbone's pretrained final LayerNorm, whose
weight and bias travel in the two trailing blocks (``z = LN_enc(h_l)``, with
``LN_enc`` that final LayerNorm and ``h_l`` the pooled output of layer ``l``).
Each row is normalised with *its own* trailing blocks.  Rows written by
``LayerwiseEmbedder`` all carry the same values, so this equals the model's
norm; reading them per row (instead of from the first row of the batch) keeps
``transform`` independent of which other rows share the batch.
``norm=None`` is for input without the trailing blocks; it returns the raw
pooled vectors, with no LayerNorm at all.

The learned fusion (PMA, a per-record gate over the layers) is in :mod:`ecgsoup.pma`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ecgsoup.layout import Layout, feature_names, infer_layout, layer_norm, resolve_layers

__all__ = ["LayerSelector", "PPA"]

_LAYER_NAMES = {"all", "blocks", "last", "middle"}


# -- helpers shared with ecgsoup.pma -----------------------------------------------------
def _layout_for(n_features: int, n_layers: int, norm) -> Layout:
    """Layout of an ``n_features``-wide input, or a ValueError saying how to fix it."""
    has_norm = norm == "carried"
    blocks = n_layers + 2 * has_norm
    if n_features < blocks or n_features % blocks:
        norm_text = " plus the 2 carried norm blocks (norm='carried')" if has_norm else ""
        hint = (
            " If the embedder ran with include_norm=False, use norm=None."
            if has_norm
            else " If the input carries the final-norm blocks, use norm='carried'."
        )
        raise ValueError(
            f"X has {n_features} feature(s), which is not {n_layers} layer blocks{norm_text} "
            f"of equal width ({blocks} blocks in all). Feed the layer-wise output of "
            "LayerwiseEmbedder and set n_layers to the number of layers it emits (13 for a "
            f"12-block ST-MEM).{hint}"
        )
    return infer_layout(n_features, n_layers, has_norm)


def _split_rows(X: np.ndarray, layout: Layout):
    """``(H, weight, bias)``: ``H`` is ``(n, n_layers, dim)``, norm rows ``(n, dim)`` or None."""
    n, dim, n_layers = X.shape[0], layout.dim, layout.n_layers
    H = X[:, : n_layers * dim].reshape(n, n_layers, dim)
    if not layout.has_norm:
        return H, None, None
    start = n_layers * dim
    return H, X[:, start : start + dim], X[:, start + dim : start + 2 * dim]


def _carried_norm(X: np.ndarray, layout: Layout, name: str):
    """The final-norm rows of ``X`` (``(2, dim)``), checked to be the same on every row.

    ``LayerwiseEmbedder`` repeats its encoder's final LayerNorm weight and bias
    on every row.  Rows that differ there are not its output: preprocessed
    signals fed straight to a fusion step (the embedder forgotten), or
    embeddings of several models stacked together.
    """
    if not layout.has_norm or not len(X):
        return None
    _, weight, bias = _split_rows(X, layout)
    carried = np.stack([weight[0], bias[0]]).astype(np.float64)
    scale = 1e-5 * (1.0 + np.abs(carried).max())
    if np.abs(weight - weight[0]).max() > scale or np.abs(bias - bias[0]).max() > scale:
        raise ValueError(
            f"{name}: the last two blocks of X, where LayerwiseEmbedder carries the encoder's final "
            "LayerNorm, differ between rows, so X is not layer-wise embeddings of one model. Put "
            "LayerwiseEmbedder before this step (preprocessed signals must be embedded first), or "
            "pass norm=None for embeddings without the norm blocks."
        )
    return carried


def _check_same_model(estimator, X: np.ndarray) -> None:
    """Refuse embeddings whose carried final norm differs from the one seen in ``fit``."""
    fitted = getattr(estimator, "carried_norm_", None)
    if fitted is None:
        return
    carried = _carried_norm(X, estimator.layout_, type(estimator).__name__)
    if carried is not None and not np.allclose(carried, fitted, rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"{type(estimator).__name__}: X comes from another model than the embeddings seen in fit "
            f"(its final-LayerNorm parameters differ, although both are {estimator.dim_} wide). "
            "Embed with the model used in fit, or fit this step again on the new model's embeddings."
        )


def _final_norm(Z: np.ndarray, weight, bias) -> np.ndarray:
    """LN_enc per row: ``Z`` is ``(n, dim)`` or ``(n, k, dim)``; no-op when no norm is carried."""
    if weight is None:
        return Z
    if Z.ndim == 3:
        weight, bias = weight[:, None, :], bias[:, None, :]
    return layer_norm(Z, weight, bias)


def _check_input_features(estimator, input_features) -> None:
    """Validate ``input_features`` of ``get_feature_names_out`` against the fitted input."""
    if input_features is None:
        return
    input_features = np.asarray(input_features, dtype=object)
    names_in = getattr(estimator, "feature_names_in_", None)
    if names_in is not None and not np.array_equal(input_features, names_in):
        raise ValueError("input_features is not equal to feature_names_in_.")
    if len(input_features) != estimator.n_features_in_:
        raise ValueError(
            f"input_features should have length equal to number of features "
            f"({estimator.n_features_in_}), got {len(input_features)}."
        )


def _fusion_names(prefix: str, dim: int) -> np.ndarray:
    return np.asarray([f"{prefix}_dim{d:04d}" for d in range(dim)], dtype=object)


class _LayerwiseTransformer(TransformerMixin, BaseEstimator):
    """Input validation and layout handling common to the fusion transformers."""

    def _fit_layout(self, X, y=None):
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.layout_ = _layout_for(X.shape[1], self.n_layers, self.norm)
        self.dim_ = self.layout_.dim
        self.carried_norm_ = _carried_norm(X, self.layout_, type(self).__name__)
        return X

    def _transform_input(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        _check_same_model(self, X)
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Pure numpy on the input's own dtype: float32 embeddings stay float32.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class LayerSelector(_LayerwiseTransformer):
    """Pick one or more layers from layer-wise embeddings (optionally final-normed).

    The cheap step that makes layer choice a hyperparameter: the backbone runs
    once, and ``GridSearchCV`` searches ``{"select__layers": [1, ..., 12]}``
    over the stored embeddings.  Selecting layer ``l`` with ``norm="carried"``
    gives ``z = LN_enc(h_l)``; the default ``layers="last"`` is the
    ST-MEM baseline.

    Parameters
    ----------
    layers : int, list of int, slice or {"last", "middle", "all", "blocks"}, default="last"
        Layers to keep (0 = token embedding, 1..L = transformer blocks).
        Negative ints count from the end; see :func:`ecgsoup.layout.resolve_layers`.
        Several layers are concatenated in the given order, each normalised
        on its own.
    n_layers : int, default=13
        Number of layer blocks in the input (L + 1; 13 for a 12-block ST-MEM).
    norm : {"carried"} or None, default="carried"
        ``"carried"``: the input ends with the final LayerNorm's weight and
        bias blocks, and each selected layer is passed through that norm.
        ``None``: the input has no norm blocks; raw pooled vectors are returned.

    Attributes
    ----------
    layers_ : tuple of int
        The selected layers as absolute indices.
    layout_ : ecgsoup.layout.Layout
        Layout read from the input width.
    carried_norm_ : ndarray of shape (2, dim) or None
        The final LayerNorm's weight and bias carried by the training input
        (``None`` with ``norm=None``).  Later input must carry the same: it
        identifies the model the embeddings came from.
    dim_ : int
        Width of one layer block.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    PPA : Mean of all block outputs, then the final norm.
    ecgsoup.pma.PMA : Learned per-sample mixture of layers.

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, LayerSelector, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()                      # 200 real LUDB recordings, 100 Hz
    >>> prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    >>> X = prep.fit_transform(ds.X[:4])
    >>> H = LayerwiseEmbedder().fit_transform(X)    # 13 layers + 2 norm blocks, 192 wide
    >>> LayerSelector(layers=[6, -1]).fit_transform(H).shape
    (4, 384)
    """

    _parameter_constraints = {
        "layers": [Integral, "array-like", slice, StrOptions(_LAYER_NAMES)],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "norm": [StrOptions({"carried"}), None],
    }

    def __init__(self, layers="last", n_layers=13, norm="carried"):
        self.layers = layers
        self.n_layers = n_layers
        self.norm = norm

    def fit(self, X, y=None):
        """Read the layout of ``X`` and resolve the layer choice.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings, ``(n_layers + 2) * dim`` columns with
            ``norm="carried"``, ``n_layers * dim`` with ``norm=None``.
        y : None
            Ignored.

        Returns
        -------
        self : LayerSelector
        """
        self._fit_layout(X)
        self.layers_ = resolve_layers(self.layers, self.n_layers)
        return self

    def transform(self, X):
        """Return the selected layers, concatenated, shape ``(n_samples, len(layers_) * dim_)``."""
        X = self._transform_input(X)
        H, weight, bias = _split_rows(X, self.layout_)
        Z = _final_norm(H[:, list(self.layers_)], weight, bias)
        return Z.reshape(X.shape[0], -1)

    def get_feature_names_out(self, input_features=None):
        """Names like ``layer06_dim0003`` for each output column."""
        check_is_fitted(self)
        _check_input_features(self, input_features)
        return feature_names(self.layers_, self.dim_, include_norm=False)


class PPA(_LayerwiseTransformer):
    """Post-pretraining Pooling-based Aggregation (PPA), as defined by ECG-Soup.

    ``z = LN_enc((1 / L) * sum_{l=1..L} h_l)``: the uniform mean of the block
    outputs (layer 0, the token embedding, is excluded), then the backbone's
    final LayerNorm carried in the input.  No parameters are learned.

    Parameters
    ----------
    n_layers : int, default=13
        Number of layer blocks in the input (L + 1); at least 2 (h_0 and one block).
    norm : {"carried"} or None, default="carried"
        ``"carried"`` applies the final LayerNorm stored in the trailing
        blocks; ``None`` (input without those blocks) returns the plain mean.

    Attributes
    ----------
    layout_ : ecgsoup.layout.Layout
        Layout read from the input width.
    carried_norm_ : ndarray of shape (2, dim) or None
        The final LayerNorm's weight and bias carried by the training input
        (``None`` with ``norm=None``).  Later input must carry the same: it
        identifies the model the embeddings came from.
    dim_ : int
        Width of one layer block, and of the output.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    LayerSelector : A single layer (or several, concatenated).
    ecgsoup.pma.PMA : Learned per-sample weights instead of the uniform mean.

    Examples
    --------
    >>> from ecgsoup import PPA, ECGPreprocessor, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()
    >>> X = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names).fit_transform(ds.X[:4])
    >>> PPA().fit_transform(LayerwiseEmbedder().fit_transform(X)).shape
    (4, 192)
    """

    _parameter_constraints = {
        "n_layers": [Interval(Integral, 2, None, closed="left")],
        "norm": [StrOptions({"carried"}), None],
    }

    def __init__(self, n_layers=13, norm="carried"):
        self.n_layers = n_layers
        self.norm = norm

    def fit(self, X, y=None):
        """Read the layout of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings (see :class:`LayerSelector`).
        y : None
            Ignored.

        Returns
        -------
        self : PPA
        """
        self._fit_layout(X)
        return self

    def transform(self, X):
        """Return ``LN_enc(mean of h_1..h_L)``, shape ``(n_samples, dim_)``."""
        X = self._transform_input(X)
        H, weight, bias = _split_rows(X, self.layout_)
        return _final_norm(H[:, 1:].mean(axis=1), weight, bias)

    def get_feature_names_out(self, input_features=None):
        """Names ``ppa_dim0000``, ``ppa_dim0001``, ..."""
        check_is_fitted(self)
        _check_input_features(self, input_features)
        return _fusion_names("ppa", self.dim_)
