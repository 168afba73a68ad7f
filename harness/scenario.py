"""Scenarios as data: TOML files under ``scenarios/``, validated against a JSON schema.

A bad file gives one message naming the file, the key and what was expected.
"""

from __future__ import annotations

import json
import tomllib
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
    replicator: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def handlers(self) -> list[str]:
        return list(self.run.get("handlers", ["replicator"]))

    def expectation(self, handler: str) -> str:
        by_handler = self.expect.get("by_handler", {})
        return str(by_handler.get(handler, self.expect.get("result", "converge")))


def _schema() -> dict[str, Any]:
    text = resources.files("harness").joinpath("schema/scenario.schema.json").read_text()
    return dict(json.loads(text))


def load_scenario(reference: str | Path) -> Scenario:
    """Load a scenario by path, or by name from the shipped ``scenarios/`` folder."""
    path = resolve(reference)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    validate(data, path)
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
        workload=data["workload"],
        driver=data.get("driver", {}),
        replicator=data.get("replicator", {}),
        target=data.get("target", {}),
        faults=data.get("faults", {}),
        run=data.get("run", {}),
        expect=data["expect"],
    )


def validate(data: dict[str, Any], path: Path) -> None:
    import jsonschema

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
