# The two commands of the README: `make demo` and `make test`.
# Each creates .venv if missing and installs torch plus ecgsoup into it.
PYTHON ?= python3
# The CPU wheel of this pin is on local disk on the project's machines; elsewhere
# pip fetches it from the index (set TORCH_SPEC to choose another build).
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ecgsoup-installed

.PHONY: demo test test-fast docs docs-browser bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,dask,docs,parity]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgsoup demo --out demo-output

# CI sets CI=true and runs the slow end-to-end tests too.
# ruff checks the project's configured rules (pyproject.toml) before any test runs.
test: $(STAMP) $(if $(CI),docs-browser)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(if $(CI),,-m "not slow")

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -x -q

# -W --keep-going -n: every warning and every broken reference fails the build
# (tests/test_docs.py runs the same command, so CI catches them too).
# The gallery (docs/examples) is executed during the build; unchanged examples are not rerun.
docs: $(STAMP) docs-browser
	$(BIN)/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

# Headless Chromium for tests/test_docs_browser.py (Debian's chromium package, as root with
# apt-get). Never fails: without it the browser test skips and says why.
docs-browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
	  || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; } \
	  || echo "docs-browser: could not install chromium; tests/test_docs_browser.py will skip"; \
	else echo "docs-browser: chromium is missing (apt-get install chromium); tests/test_docs_browser.py will skip"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info demo-output .pytest_cache
