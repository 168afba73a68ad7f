"""The import graph of a package, read from its source with ``ast`` (nothing is imported):
module-level, function-level and ``TYPE_CHECKING`` imports alike, ``from x import y`` resolved to
the submodule ``x.y`` where ``y`` is one, relative imports resolved, and
``importlib.import_module("<package>....")`` with a literal name counted. A package's ``__init__``
running before its modules is not an edge (Python runs it first whatever the module imports).
One home for both packages' checks (tests/replicator/test_import_graph.py: no circle, layers;
tests/harness/test_import_graph.py: no circle, no private name across modules).
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterable
from pathlib import Path


def modules_of(root: Path, package: str) -> dict[str, Path | None]:
    """Every module of the package under ``root``: dotted name -> its .py file (None for a C
    extension, known by its .c source)."""
    found: dict[str, Path | None] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([package, *parts])] = path
    for path in sorted(root.rglob("*.c")):
        found.setdefault(".".join([package, *path.relative_to(root).with_suffix("").parts]), None)
    return found


def _imported(tree: ast.AST, name: str, is_package: bool, modules: Iterable[str],
              package: str) -> set[str]:
    known = set(modules)
    here = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()

    def add(candidate: str) -> None:
        # the deepest known module the dotted name starts with
        while candidate and candidate not in known:
            candidate = candidate.rpartition(".")[0]
        if candidate:
            targets.add(candidate)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin != package and not origin.startswith(package + "."):
                continue
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in known else origin)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and node.args[0].value.startswith(package + ".")):
            add(node.args[0].value)
    targets.discard(name)
    return targets


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in its source."""
    modules = modules_of(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if path is None:
            graph[name] = set()
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = _imported(tree, name, path.name == "__init__.py", modules, package)
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None
