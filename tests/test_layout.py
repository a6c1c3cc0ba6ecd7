"""Data flows one way: no import cycle between h2ovl's modules (lazy and type-only imports included),
the scorers are a leaf, and the data side and constants never load the model stacks."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "h2ovl"


def _imports() -> dict[str, set[str]]:
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        name = ".".join(("h2ovl", *file.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = file
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("h2ovl"):
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert _cycles(_imports()) == []


def test_packages_depend_one_way():
    graph = _imports()

    def package(module: str) -> str:
        return module.split(".")[1]

    edges = {(package(a), package(b)) for a, targets in graph.items() for b in targets if package(a) != package(b)}
    assert not {(a, b) for a, b in edges if (b, a) in edges}
    for leaf in ("scoring", "constants", "errors", "partial_writes"):
        assert not {b for a, b in edges if a == leaf} - {"errors"}, f"h2ovl.{leaf} imports other h2ovl packages"
    data_side = {b for a, b in edges if a in ("data", "preprocessing")}
    assert "training" not in data_side


def test_what_data_loader_workers_import_loads_no_model_stack():
    """Workers unpickle the sample stream: its modules must not pull transformers or timm in."""
    import subprocess
    import sys

    code = (
        "import sys, h2ovl.data.stream, h2ovl.data.template, h2ovl.data.packing, h2ovl.data.samples; "
        "print(sorted(m for m in ('transformers', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
