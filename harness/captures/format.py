"""A captured stream bundle: ``table.json``, ``events.json`` and optionally ``final_items.json``.

The layout of ``tests/fixtures/dynamodb-local/<case>/`` (captured from DynamoDB Local) is the format;
``harness replay`` reads it and ``harness record`` (recording.py) writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import TableSpec


@dataclass
class Capture:
    table: TableSpec
    events: dict[str, Any]
    final_items: list[dict[str, Any]] | None

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.events["Records"])


def load_capture(
    table: Path, events: Path, final_items: Path | None = None
) -> Capture:
    table_request = _read_json(table)
    event = _read_json(events)
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise ValueError(f'{events}: expected a Lambda event {{"Records": [...]}}')
    items = _read_json(final_items) if final_items else None
    if items is not None and not isinstance(items, list):
        raise ValueError(f"{final_items}: expected a list of items (DynamoDB JSON)")
    try:
        spec = TableSpec.from_create_table_request(table_request)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{table}: not a CreateTable request (missing {error})") from None
    return Capture(spec, event, items)


def load_capture_dir(directory: Path) -> Capture:
    final = directory / "final_items.json"
    return load_capture(
        directory / "table.json", directory / "events.json", final if final.exists() else None
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
