"""No import circle in the dev kit (``harness``) and no private name imported across its modules.

The graph is read from the source by tests/support/import_graph.py (the one home it shares with
the core's check, tests/replicator/test_import_graph.py, which also holds the checker's own test
on a broken package).
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.import_graph import circle, import_graph, modules_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_dev_kit_has_no_import_circle() -> None:
    assert circle(import_graph(ROOT / "harness", "harness")) is None


def test_no_private_name_is_imported_across_the_dev_kits_modules() -> None:
    # A name with a leading underscore is its module's own; another module that needs it needs
    # a public name (or the code moved to where it is used).
    crossings = []
    for name, path in modules_of(ROOT / "harness", "harness").items():
        if path is None:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                crossings += [f"{name} imports {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    assert crossings == []
