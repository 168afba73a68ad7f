"""The import graph of ``replicator/``: no circle, every import down or sideways in LAYERS, and
the C accelerator known to one module.

The graph is built from the source with ``ast`` (nothing is imported): module-level, function-level
and ``TYPE_CHECKING`` imports alike, ``from x import y`` resolved to the submodule ``x.y`` where
``y`` is one, relative imports resolved, and ``importlib.import_module("replicator....")`` with a
literal name counted. A package's ``__init__`` running before its modules is not an edge (Python
runs it first whatever the module imports; the package's API, ``replicator/__init__.py``, sits at
the top). docs/architecture.md states the same layers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import replicator
from support.import_graph import circle, import_graph

PACKAGE_ROOT = Path(replicator.__file__).resolve().parent

#: replicator's layers, bottom first. A module may import from its own layer (no circle) and from
#: the layers below it, never from one above. A new module must be placed here: the test fails for
#: a module in no layer (as the accelerator's gate does for a new setting). ``name.*`` places a
#: package's modules; the package's own ``__init__`` is named without the star.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations: errors, redaction, plain frozen values, the deadline, the retry policy, the C "
     "module itself, user transforms", (
        "errors", "redact", "frozen", "deadline", "retry", "_speedups", "transforms")),
    ("the pure middle: records parsed, values converted, keys, settings, writes planned, the "
     "comparison by BSON value, copied items as records (no I/O, no pymongo operations)", (
        "convert", "events", "settings", "keys", "writes", "sharding", "source_table", "plan",
        "diff", "item_records", "migration_file")),
    ("the accelerator's door: the only module that knows the C module", ("accelerator",)),
    ("the Replicator's planner: built from settings (shared with verify, recover, the harness)", (
        "expected",)),
    ("the I/O edges: pymongo operations, bulk writes, tombstones, quarantine, read-back, the "
     "client, the URI, the Lambda environment", (
        "operations", "apply", "tombstones", "quarantine", "readback", "ties", "mongo", "uri_source",
        "environment", "aws_json", "boto_session")),
    ("the core: Replicator", ("core",)),
    ("a batch's figures", ("metrics",)),
    ("the standalone poller and redrive", ("poller", "poller.*", "redrive")),
    ("migration: sync, verify, recover", ("migrate", "migrate.*")),
    ("the replicator command", ("cli", "cli.*")),
    ("the Lambda handler", ("handler", "lambda_telemetry", "export_copy_handler")),
    ("the package's API", ("",)),
]

#: The one module that may import the C accelerator.
DOOR = "replicator.accelerator"
NATIVE = "replicator._speedups"


# -- the graph ------------------------------------------------------------------------------------
def layer_of(layers: list[tuple[str, tuple[str, ...]]], package: str) -> dict[str, int]:
    """Each placed name or pattern -> its layer's index (bottom 0)."""
    return {
        (f"{package}.{entry}" if entry else package): index
        for index, (_, entries) in enumerate(layers)
        for entry in entries
    }


def place(module: str, placed: dict[str, int]) -> int | None:
    if module in placed:
        return placed[module]
    parent = module
    while "." in parent:
        parent = parent.rpartition(".")[0]
        if f"{parent}.*" in placed:
            return placed[f"{parent}.*"]
    return None


def upward(graph: dict[str, set[str]], layers: list[tuple[str, tuple[str, ...]]],
           package: str) -> list[str]:
    """Every import of a module from a higher layer, as ``a (layer) -> b (layer)``."""
    placed = layer_of(layers, package)
    found = []
    for module, targets in sorted(graph.items()):
        mine = place(module, placed)
        for target in sorted(targets):
            theirs = place(target, placed)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{module} ({layers[mine][0].split(':')[0]}) imports {target} "
                             f"({layers[theirs][0].split(':')[0]})")
    return found


def unplaced(graph: dict[str, set[str]], layers: list[tuple[str, tuple[str, ...]]],
             package: str) -> list[str]:
    placed = layer_of(layers, package)
    return sorted(m for m in graph if place(m, placed) is None)


GRAPH = import_graph(PACKAGE_ROOT, "replicator")


# -- replicator -----------------------------------------------------------------------------------
def test_every_module_is_placed_in_a_layer() -> None:
    missing = unplaced(GRAPH, LAYERS, "replicator")
    assert not missing, (
        f"place {missing} in LAYERS (tests/replicator/test_import_graph.py) and in "
        "docs/architecture.md's layers: the lowest layer whose modules it needs"
    )


def test_every_name_in_the_layers_is_a_module() -> None:
    placed = layer_of(LAYERS, "replicator")
    stale = [name for name in placed if name.removesuffix(".*") not in GRAPH]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_replicator_has_no_import_circle() -> None:
    found = circle(GRAPH)
    assert found is None, "import circle: " + " -> ".join(found or [])


def test_replicator_imports_go_down_or_sideways() -> None:
    assert upward(GRAPH, LAYERS, "replicator") == []


def test_only_the_accelerator_knows_the_c_module() -> None:
    assert NATIVE in GRAPH  # the graph knows the extension (by its .c source)
    assert sorted(m for m, targets in GRAPH.items() if NATIVE in targets) == [DOOR]


def test_the_reference_modules_do_not_import_the_accelerator() -> None:
    # The pure middle takes the C module as an argument; only layers above it import the door.
    placed = layer_of(LAYERS, "replicator")
    door = placed[DOOR]
    importers = sorted(m for m, targets in GRAPH.items() if DOOR in targets)
    assert importers and all((place(m, placed) or 0) > door for m in importers), importers
    for reference in ("convert", "events", "plan", "operations", "keys", "writes", "apply"):
        assert DOOR not in GRAPH[f"replicator.{reference}"], reference


def test_the_graph_sees_every_kind_of_import() -> None:
    # the builder itself, on edges the source has: `from replicator import apply` (a submodule),
    # a function-level import, an __init__'s import of its package's module, the C module
    assert "replicator.apply" in GRAPH["replicator.core"]
    assert "replicator.cli.migrate" in GRAPH["replicator.cli"]  # inside a function
    assert "replicator.poller.loop" in GRAPH["replicator.poller"]
    assert "replicator._speedups" in GRAPH[DOOR]


# -- the checks themselves, on a package made to break them ---------------------------------------
@pytest.fixture
def broken(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from pkg.top import run\n",
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import mid\n",
        "mid.py": "from . import low\n",
        "top.py": "def run():\n    from .sub import leaf\n",
        "sub/__init__.py": "",
        "sub/leaf.py": "import importlib\nimportlib.import_module('pkg.top')\n",
        "orphan.py": "",
        "_native.c": "",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_the_checks_find_a_circle_an_upward_import_and_an_unplaced_module(broken: Path) -> None:
    graph = import_graph(broken, "pkg")
    assert graph == {
        "pkg": {"pkg.top"}, "pkg.low": {"pkg.mid"}, "pkg.mid": {"pkg.low"},
        "pkg.top": {"pkg.sub.leaf"}, "pkg.sub": set(), "pkg.sub.leaf": {"pkg.top"},
        "pkg.orphan": set(), "pkg._native": set(),
    }
    assert set(circle(graph) or []) in ({"pkg.low", "pkg.mid"}, {"pkg.top", "pkg.sub.leaf"})
    layers = [("low", ("low", "mid", "sub", "sub.*", "_native")), ("top", ("top", ""))]
    assert upward(graph, layers, "pkg") == [
        "pkg.sub.leaf (low) imports pkg.top (top)",
    ]
    assert unplaced(graph, layers, "pkg") == ["pkg.orphan"]
