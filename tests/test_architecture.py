"""The module map in docs/dev/architecture.md against the code, so that neither can drift.

The map gives every module of the package a tier; data flows one way, so a module
imports only from its own tier or lower ones.  The same static reading of the
imports checks that no module takes another module's private name, that there is no
import cycle, that tests use public names only, and that long modules are few and
named in the map.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ecgsoup"
MAP = ROOT / "docs" / "dev" / "architecture.md"
ROW = re.compile(r"^\|\s*`(ecgsoup[\w.]*)`\s*\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$")
LONG = 650  # lines; a longer module must say in the map why it is still one concept


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _documented() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in MAP.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = (int(match.group(2)), match.group(3))
    return rows


def _entry(module: str, rows) -> str | None:
    """The longest documented prefix of ``module`` (a package row covers its submodules)."""
    best = None
    for name in rows:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path, *, top_level_only: bool = False):
    """``(imported module, imported names, line)`` for every ecgsoup import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            if target.split(".")[0] == "ecgsoup":
                yield target, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ecgsoup":
                    yield alias.name, [], node.lineno


def _target_module(target: str, names: list[str], modules) -> list[str]:
    """The modules an import statement loads (``from ecgsoup import io`` loads ``ecgsoup.io``)."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return found or [target]


def test_every_module_is_in_the_map_and_every_row_exists():
    modules, rows = _modules(), _documented()
    assert rows, f"{MAP} has no module rows (| `ecgsoup.x` | tier | concept |)"
    missing = [m for m in modules if _entry(m, rows) is None]
    assert not missing, f"modules missing from {MAP.name}: {missing}"
    stale = [name for name in rows if name not in modules]
    assert not stale, f"rows of {MAP.name} naming no module: {stale}"


def test_imports_follow_the_tiers():
    modules, rows = _modules(), _documented()
    wrong = []
    for module, path in modules.items():
        tier = rows[_entry(module, rows)][0]
        for target, names, line in _imports(module, path):
            for loaded in _target_module(target, names, modules):
                entry = _entry(loaded, rows)
                if entry is not None and rows[entry][0] > tier:
                    wrong.append(f"{module}:{line} (tier {tier}) imports {loaded} (tier {rows[entry][0]})")
    assert not wrong, "imports reaching up a tier:\n" + "\n".join(wrong)


def test_no_module_takes_another_modules_private_name():
    wrong = []
    for module, path in _modules().items():
        for target, names, line in _imports(module, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                wrong.append(f"{module}:{line} imports {private} from {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_at_module_level():
    modules = _modules()
    graph = {m: set() for m in modules}
    for module, path in modules.items():
        for target, names, _ in _imports(module, path, top_level_only=True):
            for loaded in _target_module(target, names, modules):
                # A package's __init__ re-exporting its own submodules is not a cycle.
                if loaded in modules and loaded != module and not loaded.startswith(module + "."):
                    graph[module].add(loaded)
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    # A submodule importing its own package's __init__ is how re-exports work; only
    # cycles between unrelated modules count.
    real = [c for c in cycles if not all(a.startswith(c[0].rsplit(".", 1)[0]) for a in c)]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


def test_long_modules_are_named_in_the_map():
    modules, rows = _modules(), _documented()
    long = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules.items()}
    long = {m: n for m, n in long.items() if n > LONG}
    unexplained = [f"{m} ({n} lines)" for m, n in long.items() if m not in rows]
    assert not unexplained, f"modules over {LONG} lines need their own row in {MAP.name}: {unexplained}"


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")), ids=lambda p: p.name)
def test_tests_import_public_names_only(path):
    wrong = []
    for target, names, line in _imports("tests", path):
        private_module = any(part.startswith("_") for part in target.split("."))
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private_module or private:
            wrong.append(f"line {line}: {target} {private or ''}".rstrip())
    assert not wrong, f"{path.name} imports private names: " + "; ".join(wrong)
