"""Sphinx configuration; `make docs` builds with -W -n (warnings and broken references fail)."""

import ecgsoup

project = "ecgsoup"
author = "ecgsoup developers"
release = version = ecgsoup.__version__
copyright = "2026, ecgsoup developers"

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "dev/*"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_xref_param_type = True
numpydoc_xref_ignore = {"of", "or", "default", "optional", "shape", "array-like", "like", "int", "str",
                        "float", "bool", "None", "dict", "list", "tuple", "callable", "path", "Path",
                        "n_samples", "n_features", "n_records", "n_layers", "n_classes", "n_leads",
                        "n_times", "n_outputs", "dim", "D", "L", "N", "B", "C", "T", "S"}
numpydoc_validation_checks = set()

# No network on the build machines: references to outside docs are plain text.
intersphinx_mapping = {}
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|pandas|pd|torch|sklearn|joblib|dask|matplotlib|pathlib|os)\..*"),
    (r"py:class", r"(ndarray|DataFrame|Series|Figure|Axes|Tensor|Module|Memory|Client|Generator|"
                  r"BaseEstimator|TransformerMixin|ClassifierMixin|array|matrix|sparse matrix|"
                  r"estimator|object|iterable|sequence|mapping|scalar|Path-like|path-like|"
                  r"{.*}|.*\"|'.*'|slice|Sequence|Mapping|Iterable|Any|Tags|"
                  r"cross-validation generator|scorer|callable|None|int|float|str|bool)"),
]

html_theme = "pydata_sphinx_theme"
html_title = "ecgsoup"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": False}
