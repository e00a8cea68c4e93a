"""The layers a newcomer sees in the tree hold: storage <- indexer <- search_api.

Checked on the source (AST), so a lazy import inside a function or a TYPE_CHECKING block
counts too: nothing in storage/ or indexer/ may reach up into search_api/, and storage/
never imports indexer/."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"storage": 0, "indexer": 1, "search_api": 2}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_nothing_imports_upward():
    offences = []
    for package, level in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in _imports(path) & set(LAYERS):
                if LAYERS[target] > level:
                    offences.append(f"{path.relative_to(ROOT)} imports {target}")
    assert offences == []


def _module_graph() -> dict[str, set[str]]:
    """Module -> modules it imports at import time (top level only: a function-level
    import is a deliberate late binding and cannot form an import-time cycle)."""
    graph: dict[str, set[str]] = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            deps: set[str] = set()
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = name.split(".")[:-node.level] if not path.name == "__init__.py" \
                            else name.split(".")[:len(name.split(".")) - node.level + 1]
                        mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
                    else:
                        mod = node.module or ""
                    if node.module:          # `from . import x` loads only x, not the package
                        deps.add(mod)
                    deps.update(f"{mod}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            graph[name] = deps
    return {m: {d for d in ds if d in graph and d != m} for m, ds in graph.items()}


def test_no_import_cycles():
    graph = _module_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


_SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|DELETE\s+FROM|"
                  r"UPDATE\s+\w+\s+SET|BEGIN\s+IMMEDIATE|PRAGMA\s|CREATE\s+(TABLE|INDEX))\b",
                  re.IGNORECASE | re.DOTALL)


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module (f-string parts joined), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
            out.append((node.lineno, text))
    return out


def test_sql_lives_only_in_the_catalog_package():
    """A second catalog (PostgreSQL) implements the catalog package's repositories; SQL
    anywhere else would bypass it."""
    offences = []
    catalog = ROOT / "storage" / "catalog"
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if catalog in path.parents:
                continue
            for line, text in _strings(path):
                if _SQL.search(text):
                    offences.append(f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}")
    assert offences == []


MAX_LINES = 500


def test_no_module_over_500_lines():
    """Modules small and named for what they hold: past 500 lines one wants splitting."""
    big = []
    for package in [*LAYERS, "bench"]:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                big.append(f"{path.relative_to(ROOT)}: {lines}")
    assert big == []
