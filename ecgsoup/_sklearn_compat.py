"""Every scikit-learn private helper ecgsoup uses, imported in this one place.

scikit-learn may move or rename its private helpers between releases; when it
does, only this module changes.  The rest of the package imports the public
names below.
"""

from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in

__all__ = ["HasMethods", "Interval", "StrOptions", "check_feature_names_in"]


def check_feature_names_in(estimator, input_features):
    """Validate ``input_features`` of ``get_feature_names_out`` against the fitted input.

    ``input_features`` must equal ``feature_names_in_`` when the estimator
    saw column names, and have ``n_features_in_`` entries; returns the input
    names (generated ``x0, x1, ...`` when none are known).
    """
    return _check_feature_names_in(estimator, input_features)
