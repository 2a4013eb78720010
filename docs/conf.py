"""Sphinx configuration; `make docs` builds with -W -n (warnings and broken references fail)."""

import dataclasses
import importlib
import os
import re
from pathlib import Path

from numpydoc.xref import DEFAULT_LINKS

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
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# dev/ holds contributor notes; generated/ is rewritten by autosummary on every build;
# auto_examples/ is written by sphinx-gallery from examples/.
exclude_patterns = ["_build", "dev/*", "examples"]  # examples/: the gallery's sources
templates_path = ["_templates"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# The API reference is generated from the docstrings (api.md lists the objects);
# the stub pages go to docs/generated/ and are rebuilt each time.
autosummary_generate = True
autosummary_generate_overwrite = True
# Members are listed by the class template (_templates/autosummary/class.rst), which
# includes inherited ones; _skip_foreign_members drops those defined outside ecgsoup
# (sklearn's get_params, torch's Module methods) and keeps ecgsoup's shared bases'
# public methods (e.g. PMA.gate_weights).
autodoc_default_options = {}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters section is the one source of types
numpydoc_show_class_members = False
numpydoc_xref_param_type = True
# Types in Parameters/Returns: only ecgsoup's own classes become links (there is no
# network for intersphinx, so numpydoc's default python:/numpy: links are turned back
# into plain text); everything else ("int", "ndarray of shape (n, 12)") stays text.
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {name: name for name in DEFAULT_LINKS}
numpydoc_xref_aliases.update({
    "ECGDataset": "ecgsoup.io.ECGDataset",
    "ECGRecord": "ecgsoup.io.ECGRecord",
    "RecordError": "ecgsoup.io.RecordError",
    "ECGPreprocessor": "ecgsoup.preprocessing.ECGPreprocessor",
    "LayerwiseEmbedder": "ecgsoup.embedding.LayerwiseEmbedder",
    "LayerSelector": "ecgsoup.fusion.LayerSelector",
    "PPA": "ecgsoup.fusion.PPA",
    "PMA": "ecgsoup.pma.PMA",
    "PMAClassifier": "ecgsoup.pma.PMAClassifier",
    "STMEMEncoder": "ecgsoup.backbones.stmem.STMEMEncoder",
    "EncoderConfig": "ecgsoup.backbones.stmem.EncoderConfig",
    "WeightsError": "ecgsoup.backbones.WeightsError",
    "Backbone": "ecgsoup.backbones.Backbone",
    "InputContract": "ecgsoup.backbones.InputContract",
    "BackboneCard": "ecgsoup.backbones.BackboneCard",
    "LayerInfo": "ecgsoup.backbones.LayerInfo",
    "Readout": "ecgsoup.backbones.Readout",
    "LayerSpec": "ecgsoup.layers.LayerSpec",
    "PretrainSettings": "ecgsoup.pretraining.PretrainSettings",
    "MaskedAutoencoder": "ecgsoup.pretraining.MaskedAutoencoder",
})
numpydoc_validation_checks = set()

# No network on the build machines: references to outside docs are plain text.
intersphinx_mapping = {}
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|pandas|pd|torch|sklearn|joblib|dask|matplotlib|pathlib|os|scipy|wfdb)\..*"),
    (r"py:class", r"(ndarray|DataFrame|Series|Figure|Axes|Tensor|Module|Memory|Client|Generator|"
                  r"BaseEstimator|TransformerMixin|ClassifierMixin|array|matrix|sparse matrix|"
                  r"estimator|object|iterable|sequence|mapping|scalar|Path-like|path-like|"
                  r"{.*}|.*\"|'.*'|slice|Sequence|Mapping|Iterable|Any|Tags|"
                  r"cross-validation generator|scorer|callable|None|int|float|str|bool)"),
]

html_theme = "pydata_sphinx_theme"
html_title = "ecgsoup"
html_static_path = ["_static"]
html_css_files = ["ecgsoup.css"]
html_theme_options = {
    "navigation_with_keys": False,
    # The first six toctree entries of index.md (getting started, user guide, examples,
    # your labels, API reference, results) stay in the top bar at 1280 px; the rest go
    # under "More".
    "header_links_before_dropdown": 6,
}

# --- the gallery (docs/examples -> docs/auto_examples), executed on every build -----------
# Examples that use the PTB-XL subset find it through ECGSOUP_SHARED_DATA (as the tests
# do); without it they say so and skip that part, and the build still succeeds.
_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "ECGSOUP_SHARED_DATA" not in os.environ and (_SHARED_DATA / "README.md").exists():
    os.environ["ECGSOUP_SHARED_DATA"] = str(_SHARED_DATA)
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every example is executed
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 0,
    "only_warn_on_example_error": False,
    "abort_on_example_error": True,
}


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Skip class members inherited from scikit-learn, torch or the standard library."""
    if skip or what not in ("class", "exception"):
        return None
    function = getattr(obj, "fget", obj)
    function = getattr(function, "__func__", function)
    module = getattr(function, "__module__", None)
    if callable(function) and module and not module.startswith("ecgsoup"):
        return True
    return None


def _import_object(path):
    """The object named by a dotted path (module prefix imported), or None."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


_DOCUMENTED = {"size": -1, "by_id": {}}


def _documented_name(env, obj):
    """Name under which the API reference documents ``obj`` (a re-export is the same object)."""
    objects = env.get_domain("py").objects
    if _DOCUMENTED["size"] != len(objects):  # rebuilt once all documents are read
        by_id = {}
        for name in objects:
            found = _import_object(name) if name.startswith("ecgsoup") else None
            if found is not None:
                by_id.setdefault(id(found), name)
        _DOCUMENTED.update(size=len(objects), by_id=by_id)
    return _DOCUMENTED["by_id"].get(id(obj))


def _resolve_ecgsoup_aliases(app, env, node, contnode):
    """Resolve references to an ecgsoup object by any of its import paths.

    Docstrings may name an object where users import it (``ecgsoup.ECGPreprocessor``)
    or where it is defined (``ecgsoup.pretraining.mae.MaskedAutoencoder``); the API
    reference documents it once, under its public module.  A reference to a dataclass
    field (``ECGDataset.errors``) resolves to the class, whose Parameters section
    documents its fields.  Anything else stays unresolved, and fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module") or ""
    candidates = [f"{module}.{target}" if module else target, target, f"ecgsoup.{target}"]
    for candidate in dict.fromkeys(candidates):
        if not candidate.startswith("ecgsoup"):
            continue
        obj = _import_object(candidate)
        owner, _, field = candidate.rpartition(".")
        if obj is None:
            owner_obj = _import_object(owner)
            if not (dataclasses.is_dataclass(owner_obj) and field in {f.name for f in dataclasses.fields(owner_obj)}):
                continue
            obj = owner_obj
        name = _documented_name(env, obj)
        if name is None:
            continue
        return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, "obj", name, node, contnode)
    return None


_TYPE_LINE = re.compile(r"^(\s*\*\*[^*]+\*\* : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<=\w)_(?=[^\w`]|$)")


def _escape_type_underscores(app, what, name, obj, options, lines):
    """Keep fitted-attribute names in types (``(len(layers_), dim_)``) as text.

    numpydoc leaves unlinked type text as is, and reST would read ``layers_`` as a
    hyperlink reference; runs after numpydoc has rendered the sections.
    """
    for i, line in enumerate(lines):
        match = _TYPE_LINE.match(line)
        if match and "`" not in match.group(2):
            lines[i] = match.group(1) + _TRAILING_UNDERSCORE.sub(r"\\_", match.group(2))


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _escape_type_underscores, priority=900)
    app.connect("missing-reference", _resolve_ecgsoup_aliases)
