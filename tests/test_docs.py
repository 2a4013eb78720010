"""The documentation: it builds without a warning, and its code uses the real API.

The build test runs the command of ``make docs`` (``sphinx -W --keep-going -n``)
into a temporary folder, so a broken reference, a missing page, a docstring
numpydoc cannot parse or an include whose file is gone fails CI (which runs the
slow tests).  The fast test checks every Python block of the hand-written pages:
it must parse, and every name it imports from ``ecgsoup`` must exist.
"""

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"_build", "generated", "dev"} & set(p.relative_to(DOCS).parts))
PYTHON_BLOCK = re.compile(r"^```(?:python|py)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _python_blocks():
    for page in PAGES:
        for number, match in enumerate(PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
            yield pytest.param(match.group(1), id=f"{page.relative_to(DOCS)}#{number}")


@pytest.mark.parametrize("code", list(_python_blocks()))
def test_code_blocks_parse_and_import_real_names(code):
    tree = ast.parse(code)  # a SyntaxError names the block in the test id
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ecgsoup":
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ecgsoup":
                    importlib.import_module(alias.name)
    assert not missing, f"the docs import names that do not exist: {missing}"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    if importlib.util.find_spec("sphinx") is None:
        message = "sphinx is not installed (pip install -e '.[docs]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"sphinx failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    for page in ("index", "getting-started", "user-guide", "pretraining", "model-card", "api", "changelog"):
        assert (out / f"{page}.html").exists(), f"{page}.html was not built"
    # The API reference is generated from docstrings: the embedder's page must hold its parameters.
    embedder_page = (out / "generated" / "ecgsoup.embedding.LayerwiseEmbedder.html").read_text(encoding="utf-8")
    assert "memory" in embedder_page and "Parameters" in embedder_page
