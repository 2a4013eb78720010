"""The documentation: it builds without a warning, and its code uses the real API.

The build test runs the command of ``make docs`` (``sphinx -W --keep-going -n``)
into a temporary folder, so a broken reference, a missing page, a docstring
numpydoc cannot parse or an include whose file is gone fails CI (which runs the
slow tests).  The fast test checks every Python block of the hand-written pages:
it must parse, and every name it imports from ``ecgsoup`` must exist.
"""

import ast
import importlib
import re
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
def test_docs_build_without_warnings(docs_html):
    out = docs_html  # built by the conftest fixture with the command of `make docs`
    for page in ("index", "getting-started", "user-guide", "your-labels", "auto_examples/index", "pretraining",
                 "model-card", "api", "changelog"):
        assert (out / f"{page}.html").exists(), f"{page}.html was not built"
    # The API reference is generated from docstrings: the embedder's page must hold its parameters.
    embedder_page = (out / "generated" / "ecgsoup.embedding.LayerwiseEmbedder.html").read_text(encoding="utf-8")
    assert "memory" in embedder_page and "Parameters" in embedder_page


# --- the "Your labels" page runs as written ----------------------------------------------------

BLOCK = re.compile(r"^```(python|bash|text)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_your_labels_page_runs_as_written(shared_data, tmp_path, monkeypatch):
    """Every Python block of your-labels.md runs, in order, in one namespace; every `ecgsoup`
    command on the bundled sample runs and prints the output lines the page shows.

    The placeholders for a PTB-XL download and for Challenge files point at the shared real
    data: PTB-XL's 30-record sample (folders and folds), the z-scored subset's label table
    (SCP codes joined by ';', which parse_scp_codes reads like the download's dictionaries),
    and the Challenge 2020/2021 records.
    """
    import shlex
    import subprocess
    import sys

    page = (DOCS / "your-labels.md").read_text(encoding="utf-8")
    paths = {
        "~/data/ptb-xl/ptbxl_database.csv": shared_data / "ptbxl_zscored_subset" / "labels.csv",
        "~/data/ptb-xl": shared_data / "ptbxl_sample",
        "~/data/cinc2021": shared_data / "cinc2020_2021_sample" / "records",
    }
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "your_labels_page"}
    ecgsoup_command = Path(sys.executable).with_name("ecgsoup")
    previous, output, ran = None, "", {"python": 0, "bash": 0, "text": 0}
    for kind, code in BLOCK.findall(page):
        if kind == "python":
            for placeholder, real in paths.items():
                code = code.replace(placeholder, str(real))
            exec(compile(code, f"your-labels.md python block {ran['python'] + 1}", "exec"), namespace)
        elif kind == "bash":
            output = ""
            if "~/" in code:  # commands on the reader's own data
                previous = None
                continue
            for line in code.strip().splitlines():
                argv = shlex.split(line)
                assert argv[0] == "ecgsoup", line
                result = subprocess.run([str(ecgsoup_command), *argv[1:]], capture_output=True, text=True,
                                        timeout=900)
                assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
                output += result.stdout
        elif previous == "bash" and output:
            missing = [line for line in code.strip().splitlines() if line not in output.splitlines()]
            assert not missing, f"the page shows output lines the command did not print: {missing}\n{output}"
        elif code.startswith("record_id,"):  # the excerpt of labels.csv written by the first block
            written = Path("labels.csv").read_text(encoding="utf-8").splitlines()
            assert all(line in written for line in code.strip().splitlines()), code
        ran[kind] += 1
        previous = kind
    assert ran["python"] >= 8 and ran["bash"] >= 3, ran  # the PTB-XL download commands are not run
    # What the blocks computed is what the page says.
    assert namespace["Y"].shape == (142, 7) and len(namespace["labelled"]) == 142
    assert namespace["scores"].shape == (5,) and 0.0 <= namespace["scores"].min() <= 1.0
    assert set(namespace["PTBXL_TASKS"]) == {"all", "diag", "sub", "super", "form", "rhythm"}
    assert all(isinstance(codes, tuple) for codes in namespace["challenge"].metadata["dx"])
    assert 0 < len(namespace["with_dx"]) < len(namespace["challenge"]) == len(namespace["y_af"]) + (
        namespace["challenge"].metadata["dx"].map(len).eq(0).sum())
    assert Path("ptbxl-labels.csv").read_text().startswith("ecg_id,strat_fold,superclasses")
