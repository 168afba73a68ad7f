"""Scenarios as data: TOML files under ``scenarios/``, validated against a JSON schema.

Two kinds, one report: a *stream* scenario (``[table]`` + ``[workload]``: a workload replicated
through the event source mapping emulation, harness/runner.py) and a *migration* scenario
(``[migration]``: ``replicator sync`` or ``recover`` under a live writer, harness/migration.py).
A bad file gives one message naming the file, the key and what was expected.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.backends.base import TableSpec

# In a checkout, scenarios/ at the root; in an installed wheel, the copy shipped as package data
# (setup.py maps scenarios/ to the package harness.data.scenarios).
_CHECKOUT_SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SCENARIO_DIR = (_CHECKOUT_SCENARIOS if _CHECKOUT_SCENARIOS.is_dir()
                else Path(__file__).resolve().parent / "data" / "scenarios")
DEFAULT_SCENARIO = "smoke"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    table: TableSpec
    workload: dict[str, Any]
    driver: dict[str, Any] = field(default_factory=dict)
    #: ``[stream]``: the changes' source (harness.kinesis.KdsSettings; empty: the DynamoDB stream)
    stream: dict[str, Any] = field(default_factory=dict)
    replicator: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    #: a migration scenario's ``[migration]`` table (empty for a stream scenario)
    migration: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"stream"``, or the migration's kind (``"initial-sync"``, ``"gap-recovery"``)."""
        return str(self.migration["kind"]) if self.migration else "stream"

    @property
    def handlers(self) -> list[str]:
        return list(self.run.get("handlers", ["replicator"]))

    def expectation(self, handler: str) -> str:
        by_handler = self.expect.get("by_handler", {})
        return str(by_handler.get(handler, self.expect.get("result", "converge")))


def _schema() -> dict[str, Any]:
    text = resources.files("harness").joinpath("schema/scenario.schema.json").read_text()
    return dict(json.loads(text))


def load_scenario(reference: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load a scenario by path, or by name from the shipped ``scenarios/`` folder.

    ``overrides`` maps dotted keys to values (``{"migration.items": 20000}``) set in the file's
    data before it is validated, so an override the schema refuses is a ScenarioError naming it.
    """
    path = resolve(reference)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    for key, value in (overrides or {}).items():
        _override(data, key, value, path)
    validate(data, path)
    if "migration" in data:
        # The migration's writer makes the items (harness.migration.item): a string key "pk".
        spec = TableSpec(name=data["name"], partition_key=("pk", "S"))
    else:
        table = data["table"]
        partition = table["partition_key"]
        sort = table.get("sort_key")
        spec = TableSpec(
            name=table.get("name", data["name"]),
            partition_key=(partition["name"], partition["type"]),
            sort_key=(sort["name"], sort["type"]) if sort else None,
            stream_view_type=table.get("stream_view_type", "NEW_AND_OLD_IMAGES"),
        )
    return Scenario(
        path=path,
        name=data["name"],
        description=data["description"],
        table=spec,
        workload=data.get("workload", {}),
        driver=data.get("driver", {}),
        stream=data.get("stream", {}),
        replicator=data.get("replicator", {}),
        target=data.get("target", {}),
        faults=data.get("faults", {}),
        run=data.get("run", {}),
        expect=data["expect"],
        migration=data.get("migration", {}),
    )


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """``["migration.items=20000", "run.timeout_s=600"]`` -> ``{"migration.items": 20000, ...}``.

    A value is read as a TOML value (``20000``, ``true``, ``[0, 3]``, ``"text"``), else kept as
    the text itself (``workload.key_distribution=zipf``). Raises ScenarioError for an assignment
    without ``=`` or an empty key.
    """
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        key = key.strip()
        if not equals or not key or any(not part for part in key.split(".")):
            raise ScenarioError(f"--set {assignment!r}: give KEY=VALUE, e.g. migration.items=20000")
        try:
            parsed[key] = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            parsed[key] = text.strip()
    return parsed


def _override(data: dict[str, Any], key: str, value: Any, path: Path) -> None:
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ScenarioError(f"{path}: key {where}: is a value, not a table; cannot set {key}")
        node = child
    node[last] = value


def validate(data: dict[str, Any], path: Path) -> None:
    import jsonschema

    if isinstance(data.get("migration"), dict):
        # The schema says it too (if/then), in words no one reads: say which keys to remove.
        stream_keys = [k for k in ("table", "workload", "driver", "replicator", "faults", "stream")
                       if k in data]
        if stream_keys:
            raise ScenarioError(
                f"{path}: key {stream_keys[0]}: a migration scenario makes its own table (partition "
                f"key pk, a string) and writes it itself; remove {', '.join(stream_keys)}")

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        expected = _expected(error)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ScenarioError(f"{path}: key {key}: {error.message}{expected}{more}")
    expect = data["expect"]
    if "result" not in expect and "by_handler" not in expect:
        raise ScenarioError(f"{path}: key expect: give result or by_handler")
    if "migration" in data:
        # One copy process, its verify and the poller after it: no handlers to compare.
        if "handlers" in data.get("run", {}):
            raise ScenarioError(f"{path}: key run.handlers: a migration scenario runs the "
                                "replicator's copy and poller; it has no handlers")
        if "kill_at" in data["migration"] and "kill_random" in data["migration"]:
            raise ScenarioError(f"{path}: key migration: give kill_at or kill_random, not both")
        if expect.get("result") != "converge" or set(expect) - {"result"}:
            raise ScenarioError(f"{path}: key expect: a migration scenario expects "
                                'result = "converge" (and nothing else)')
        return
    handlers = data.get("run", {}).get("handlers", ["replicator"])
    unknown = set(expect.get("by_handler", {})) - set(handlers)
    if unknown:
        raise ScenarioError(
            f"{path}: key expect.by_handler: {sorted(unknown)} are not in run.handlers {handlers}"
        )


def _expected(error: Any) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"; expected one of: {', '.join(allowed)}" if allowed else ""
    if error.validator == "type":
        return ""
    return ""


def resolve(reference: str | Path) -> Path:
    path = Path(reference)
    if path.suffix == ".toml" or path.exists():
        return path
    return SCENARIO_DIR / f"{reference}.toml"


def list_scenarios(directory: Path = SCENARIO_DIR) -> list[tuple[Path, Scenario]]:
    return [(p, load_scenario(p)) for p in sorted(directory.glob("*.toml"))]
