"""Parameter-free ways of turning layer-wise embeddings into one feature vector.

Both estimators read the columns of :class:`~ecgsoup.LayerwiseEmbedder`'s
output through a :class:`~ecgsoup.layers.LayerSpec` (layer names, widths,
streams, the model's readout and id) and never run the backbone, so a grid
search over their parameters costs milliseconds.

The usual way is to let the embedder apply them::

    LayerwiseEmbedder(fusion=PPA())             # or LayerSelector(layers=6), PMA(...)

so that ``GridSearchCV`` searches ``{"embed__fusion": [...]}`` while the
backbone still runs once per record (with ``memory=``).  On their own, they
take the specification explicitly (``PPA(layer_spec=embedder.layer_spec_)``
or ``stored.layer_spec``); with ``layer_spec=None`` the input is read as
``n_layers`` equal blocks of raw numbers with no readout.

The readout is what the original model applies after pooling: ST-MEM's
pretrained final LayerNorm (``z = LN_enc(h_l)``), or nothing for models whose
layers are already normalised (HuBERT-ECG) and for CNNs.

The learned fusion (PMA, a per-record gate over the layers) is in :mod:`ecgsoup.pma`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ecgsoup._fusion_base import SPEC_CONSTRAINT, fusion_names, same_stream, spec_for
from ecgsoup._sklearn_compat import Interval, check_feature_names_in
from ecgsoup.layers import resolve_layers

__all__ = ["LayerSelector", "PPA"]

class _LayerwiseTransformer(TransformerMixin, BaseEstimator):
    """Input validation and the layer specification common to the fusion transformers."""

    def _fit_spec_and_validate(self, X):
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.layer_spec_ = spec_for(self, X)
        return X

    def _transform_input(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return X

    def _resolve(self, layers):
        spec = self.layer_spec_
        return resolve_layers(layers, len(spec.layers), [layer.name for layer in spec.layers])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Pure numpy on the input's own dtype: float32 embeddings stay float32.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class LayerSelector(_LayerwiseTransformer):
    """Pick one or more layers from layer-wise embeddings (by default through the model's readout).

    The cheap step that makes layer choice a hyperparameter: the backbone runs
    once, and ``GridSearchCV`` searches ``{"embed__fusion": [LayerSelector(layers=l)
    for l in range(1, 13)]}`` over the cached embeddings.  Selecting layer
    ``l`` gives ``z = readout(h_l)`` (for ST-MEM, its final LayerNorm); the
    default ``layers="last"`` is the usual last-layer baseline.  Layers of
    different widths (CNN stages) are concatenated; ``balance=True`` gives
    each of them the same total variance.

    Parameters
    ----------
    layers : int, str, list, slice or {"last", "middle", "all", "blocks"}, default="last"
        Layers to keep: indices (0 = the pre-block representation, negative
        from the end) or names (``"layer06"``, ``"stage5"``).  Several
        layers are concatenated in the given order.
    apply_readout : bool, default=True
        Pass each selected layer through the model's readout.  The readout
        is only defined for layers of the model's final width; for layers of
        another width (a CNN's earlier stages) it is skipped.
    balance : bool, default=False
        Standardise every selected layer (training statistics) and scale it
        to a total variance of 1, so that wide layers do not drown narrow
        ones in a penalised model.
    layer_spec : LayerSpec or None, default=None
        What the columns of X are (``embedder.layer_spec_``,
        ``stored.layer_spec``).  Set by :class:`~ecgsoup.LayerwiseEmbedder`
        when this step is its ``fusion``.  ``None``: X is ``n_layers`` equal
        blocks of raw numbers and no readout is applied.
    n_layers : int, default=13
        Number of equal blocks in X when ``layer_spec`` is None.

    Attributes
    ----------
    layers_ : tuple of int
        The selected layers, as positions in the input.
    layer_spec_ : LayerSpec
        The specification used (given, or equal raw blocks).
    mean_, scale_ : list of ndarray
        Per-layer standardisation and block factor (only with ``balance=True``).
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.

    See Also
    --------
    PPA : Mean of the block outputs, then the readout.
    ecgsoup.pma.PMA : Learned per-sample mixture of layers.

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, LayerSelector, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()                      # 200 real LUDB recordings, 100 Hz
    >>> prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    >>> X = prep.fit_transform(ds.X[:4])
    >>> LayerwiseEmbedder(fusion=LayerSelector(layers=[6, -1])).fit_transform(X).shape
    (4, 384)
    """

    _parameter_constraints = {
        "layers": [Integral, str, "array-like", slice],
        "apply_readout": ["boolean"],
        "balance": ["boolean"],
        "layer_spec": SPEC_CONSTRAINT,
        "n_layers": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, layers="last", apply_readout=True, balance=False, layer_spec=None, n_layers=13):
        self.layers = layers
        self.apply_readout = apply_readout
        self.balance = balance
        self.layer_spec = layer_spec
        self.n_layers = n_layers

    def fit(self, X, y=None):
        """Resolve the layer choice (and learn the balancing statistics).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings described by ``layer_spec``.
        y : None
            Ignored.

        Returns
        -------
        self : LayerSelector
        """
        X = self._fit_spec_and_validate(X)
        self.layers_ = self._resolve(self.layers)
        if self.balance:
            self.mean_, self.scale_ = [], []
            for p in self.layers_:
                Z = self._readout(self.layer_spec_.block(X, p), p).astype(np.float64)
                std = Z.std(axis=0) if len(Z) > 1 else np.ones(Z.shape[1])
                std = np.where(std > 0, std, 1.0)
                total = float(((Z - Z.mean(axis=0)) / std).var(axis=0).sum()) if len(Z) > 1 else 1.0
                self.mean_.append(Z.mean(axis=0))
                self.scale_.append(std * np.sqrt(total if total > 0 else 1.0))
        return self

    def _readout(self, Z, position):
        spec = self.layer_spec_
        readout = spec.readout
        if not self.apply_readout or readout.kind == "identity":
            return Z
        if readout.weight is not None and Z.shape[1] != len(readout.weight):
            return Z  # the readout belongs to the final width only
        return readout(Z)

    def transform(self, X):
        """Return the selected layers, concatenated.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, sum of the selected widths)
        """
        X = self._transform_input(X)
        spec = self.layer_spec_
        parts = []
        for i, p in enumerate(self.layers_):
            Z = self._readout(spec.block(X, p), p)
            if self.balance:
                Z = ((Z - self.mean_[i]) / self.scale_[i]).astype(X.dtype, copy=False)
            parts.append(Z)
        return np.concatenate(parts, axis=1) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    def get_feature_names_out(self, input_features=None):
        """Names like ``layer06_dim0003`` for each output column."""
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        return self.layer_spec_.feature_names(self.layers_)


class PPA(_LayerwiseTransformer):
    """Post-pretraining Pooling-based Aggregation (PPA), as defined by ECG-Soup.

    ``z = readout((1 / L) * sum_{l=1..L} h_l)``: the uniform mean of the block
    outputs (layer 0, the pre-block representation, is excluded), then the
    model's readout (for ST-MEM its final LayerNorm, ``LN_enc``).  No
    parameters are learned.  Only layers of one representation space (one
    residual stream, one width) can be averaged; for a CNN whose stages
    differ, PPA refuses and names the alternative.

    Parameters
    ----------
    layers : str, list or slice, default="blocks"
        Layers to average (``"blocks"``: 1..L).
    layer_spec : LayerSpec or None, default=None
        What the columns of X are; set by the embedder when PPA is its
        ``fusion``.  ``None``: ``n_layers`` equal raw blocks, no readout.
    n_layers : int, default=13
        Number of equal blocks in X when ``layer_spec`` is None; at least 2.

    Attributes
    ----------
    layers_ : tuple of int
        The averaged layers, as positions in the input.
    layer_spec_ : LayerSpec
        The specification used.
    dim_ : int
        Width of the output.
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
    >>> LayerwiseEmbedder(fusion=PPA()).fit_transform(X).shape
    (4, 192)
    """

    _parameter_constraints = {
        "layers": [str, "array-like", slice],
        "layer_spec": SPEC_CONSTRAINT,
        "n_layers": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(self, layers="blocks", layer_spec=None, n_layers=13):
        self.layers = layers
        self.layer_spec = layer_spec
        self.n_layers = n_layers

    def fit(self, X, y=None):
        """Resolve and check the averaged layers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings described by ``layer_spec``.
        y : None
            Ignored.

        Returns
        -------
        self : PPA
        """
        self._fit_spec_and_validate(X)
        self.layers_ = self._resolve(self.layers)
        same_stream(self, self.layer_spec_, self.layers_)
        self.dim_ = self.layer_spec_.layers[self.layers_[0]].width
        return self

    def transform(self, X):
        """Return ``readout(mean of the chosen layers)``, shape ``(n_samples, dim_)``."""
        X = self._transform_input(X)
        spec = self.layer_spec_
        mean = spec.block(X, self.layers_[0]).astype(X.dtype, copy=True)
        for p in self.layers_[1:]:
            mean += spec.block(X, p)
        mean /= np.asarray(len(self.layers_), dtype=X.dtype)
        return spec.readout(mean)

    def get_feature_names_out(self, input_features=None):
        """Names ``ppa_dim0000``, ``ppa_dim0001``, ..."""
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        return fusion_names("ppa", self.dim_)
