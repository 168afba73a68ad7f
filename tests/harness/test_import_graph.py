"""No import circles in the dev kit (``harness``) nor in the core (``replicator``).

The graph is read from the source with :mod:`ast`: every ``import x`` and ``from x import y`` of a
module, at its top level and inside its functions (a function-level import only hides a circle
until the function runs), ``if TYPE_CHECKING`` blocks included. ``from package import name`` is an
edge to ``package.name`` when that is a module, else to ``package``. A package's
``__init__`` that a submodule's import loads implicitly is not an edge: Python always does that.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def extensions(package: str, root: Path = ROOT) -> set[str]:
    """Compiled modules (the C accelerator): leaves of the graph, imported by no Python code."""
    found = set()
    for path in (root / package).rglob("*"):
        if path.suffix in (".so", ".pyd"):
            parts = list(path.relative_to(root).parts)
            parts[-1] = parts[-1].split(".")[0]
            found.add(".".join(parts))
    return found


def imports(name: str, path: Path, known: set[str], leaves: frozenset[str] = frozenset()
            ) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports anywhere in its body
    (``leaves``: modules that are no edge, such as a compiled one)."""
    is_package = path.name == "__init__.py"
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known | leaves
                       else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target in leaves:
                continue
            # ``import a.b.c`` loads a.b.c; the nearest known module is the edge
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def circles(package: str, root: Path = ROOT) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    found = modules(package, root)
    known = set(found)
    leaves = frozenset(extensions(package, root))
    graph = {name: sorted(imports(name, path, known, leaves)) for name, path in found.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_a_circle(tmp_path: Path) -> None:
    # The check itself: a package whose two modules import each other (one of them inside a
    # function, one relatively) is reported.
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from loop.b import g\n    return g\n")
    (package / "b.py").write_text("from . import a\n\ndef g():\n    return a\n")
    (package / "c.py").write_text("import loop.a\n")
    assert circles("loop", tmp_path) == [["loop.a", "loop.b"]]
    (package / "b.py").write_text("def g():\n    return 1\n")
    assert circles("loop", tmp_path) == []


def test_the_dev_kit_has_no_import_circle() -> None:
    assert circles("harness") == []


@pytest.mark.xfail(strict=True, reason="issue 20: replicator circles, separate branch")
def test_the_core_has_no_import_circle() -> None:
    assert circles("replicator") == []


def test_no_private_name_is_imported_across_the_dev_kits_modules() -> None:
    # A name with a leading underscore is its module's own; another module that needs it needs
    # a public name (or the code moved to where it is used).
    crossings = []
    for name, path in modules("harness").items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                crossings += [f"{name} imports {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    assert crossings == []
