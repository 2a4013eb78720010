"""``BlockScaler``: scale a block of columns to a given total variance, as one unit.

Used wherever blocks of different widths meet in one feature matrix (clinical
features beside embeddings, CNN stages of 64 to 1,024 channels side by side),
so that each block weighs the same whatever its width.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ecgsoup._sklearn_compat import Interval, check_feature_names_in

__all__ = ["BlockScaler"]


class BlockScaler(TransformerMixin, BaseEstimator):
    """Scale a block of columns to a given total variance, as one unit.

    ``fit`` learns ``scale_ = sqrt(sum of the column variances / total)``;
    ``transform`` divides every column by it.  After standardisation the sum
    of variances equals the block's width, so this is the classic
    ``1 / sqrt(width)`` block weight; after a PCA it accounts for the
    variance the kept components actually carry.  The relative scale of the
    columns inside the block is untouched.

    Parameters
    ----------
    total_variance : float, default=1.0
        Sum of the column variances after scaling (on the training data).

    Attributes
    ----------
    scale_ : float
        Divisor applied to every column (1 when the block has no variance).
    n_features_in_ : int
        Number of columns.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame input.

    Examples
    --------
    >>> import numpy as np
    >>> from ecgsoup.blocks import BlockScaler
    >>> X = np.random.default_rng(0).normal(size=(100, 16))
    >>> round(float(BlockScaler().fit_transform(X).var(axis=0).sum()), 6)
    1.0
    """

    _parameter_constraints = {"total_variance": [Interval(Real, 0, None, closed="neither")]}

    def __init__(self, total_variance=1.0):
        self.total_variance = total_variance

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y=None):
        """Learn the block's scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : BlockScaler
        """
        self._validate_params()
        X = validate_data(self, X, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan")
        variance = float(np.nansum(np.nanvar(X, axis=0))) if len(X) > 1 else 0.0
        self.scale_ = float(np.sqrt(variance / self.total_variance)) if variance > 0 else 1.0
        return self

    def transform(self, X):
        """Divide every column by ``scale_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan")
        return X / np.asarray(self.scale_, dtype=X.dtype)

    def get_feature_names_out(self, input_features=None):
        """The input column names, unchanged."""
        check_is_fitted(self)
        return check_feature_names_in(self, input_features)
