"""(a) of bench_core.py: conversion items/s of ``replicator.convert.Converter().image`` on the
type-zoo fixture items against boto3's ``TypeDeserializer`` and dynamodb-json, with a no-loss check
of every number."""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _path in (str(ROOT), str(HERE)):  # the project, and this folder's sibling scripts
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bson  # noqa: E402
from bench_common import calibrate, interleaved, median, synthetic_item  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402

import replicator.accelerator  # noqa: E402
from replicator.convert import Converter  # noqa: E402

TYPE_ZOO_DIRS = (
    ROOT / "tests" / "fixtures" / "dynamodb-local" / "type_zoo",  # preferred when the repo has it
    ROOT.parent / "shared" / "fixtures" / "dynamodb-local" / "type_zoo",
    Path("/work/shared/fixtures/dynamodb-local/type_zoo"),
)

# -- (a) conversion ------------------------------------------------------------------------------


def type_zoo_dir() -> Path:
    override = os.environ.get("BENCH_TYPE_ZOO")
    for folder in ((Path(override),) if override else ()) + TYPE_ZOO_DIRS:
        if (folder / "final_items.json").is_file() and (folder / "events.json").is_file():
            return folder
    raise SystemExit(f"type-zoo fixture not found in any of {[str(d) for d in TYPE_ZOO_DIRS]}")


def type_zoo_items(folder: Path) -> list[dict[str, Any]]:
    """The final items and every NewImage of the events: DynamoDB JSON as DynamoDB Local wrote it."""
    items = json.loads((folder / "final_items.json").read_text())
    events = json.loads((folder / "events.json").read_text())
    records = events["Records"] if isinstance(events, Mapping) else events
    items += [r["dynamodb"]["NewImage"] for r in records if "NewImage" in r.get("dynamodb", {})]
    return items


def boto3_image(deserializer: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    # The usual idiom: TypeDeserializer works on one typed value, so map it over the attributes.
    def image(item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: deserializer.deserialize(value) for name, value in item.items()}

    return image


def failing_attributes(image: Callable[[Any], Any], items: list[dict[str, Any]]) -> dict[str, str]:
    """``{attribute: "ExceptionType"}`` of every top-level attribute the converter raises on."""
    failing: dict[str, str] = {}
    for item in items:
        for name, value in item.items():
            try:
                image({name: value})
            except Exception as error:  # boto3 raises TypeError, decimal.Rounded, ...
                failing.setdefault(name, type(error).__name__)
    return failing


def handled(image: Callable[[Any], Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        try:
            image(item)
        except Exception:
            continue
        out.append(item)
    return out


def boto3_ready(value: Any) -> Any:
    """A typed value as boto3 wants it: B/BS as bytes (as get_records returns them), and DynamoDB
    Local's bare ``{}`` for an empty map in a list as ``{"M": {}}``."""
    if not value:
        return {"M": {}}
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(p) for p in payload]}
    if tag == "M":
        return {"M": {k: boto3_ready(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [boto3_ready(v) for v in payload]}
    return {tag: payload}


def number_pairs(typed: Any, converted: Any, sets_sorted: bool) -> Iterable[tuple[str, Any]]:
    """(original N text, converted value) for every number of an attribute, at any depth.

    ``sets_sorted``: the converter returns an NS as a list sorted by value (ours); otherwise an NS
    is paired only when it came back as a set of numbers (compared as multisets by value).
    """
    if not typed:
        return
    ((tag, payload),) = typed.items()
    if tag == "N":
        yield payload, converted
    elif tag == "NS":
        if sets_sorted:
            yield from zip(sorted(payload, key=Decimal), converted, strict=True)
        else:
            yield from zip(sorted(payload, key=Decimal), sorted(converted, key=_as_decimal), strict=True)
    elif tag == "M":
        for name, value in payload.items():
            yield from number_pairs(value, converted[name], sets_sorted)
    elif tag == "L":
        for value, out in zip(payload, converted, strict=True):
            yield from number_pairs(value, out, sets_sorted)


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return Decimal(value)


def exact(text: str, value: Any) -> bool:
    """Does ``value`` hold the number ``text`` exactly?  (Decimal(str(x)) == Decimal(text).)"""
    if isinstance(value, bool):
        return False
    if isinstance(value, Decimal128):
        return Decimal(str(value)) == Decimal(text) and value.to_decimal() == Decimal(text)
    if isinstance(value, (int, str, Decimal)):
        return Decimal(str(value)) == Decimal(text)
    if isinstance(value, float):
        return Decimal(value) == Decimal(text)  # the float's exact binary value
    return False


def loss_report(
    items: list[dict[str, Any]], image: Callable[[Any], Any], *, sets_sorted: bool
) -> dict[str, int]:
    """Numbers checked, numbers not exact, numbers left as text by an NS, items with a loss,
    items BSON can encode."""
    report = Counter(numbers=0, inexact=0, ns_left_as_text=0, lossy_items=0, bson_encodable=0)
    for item in items:
        converted = image(item)
        lost = False
        for name, typed in item.items():
            tag = next(iter(typed), None)
            out = converted[name]
            if tag == "NS" and not sets_sorted and all(isinstance(v, str) for v in out):
                report["ns_left_as_text"] += len(out)  # dynamodb-json: NS -> set of str
                lost = True
                continue
            for text, value in number_pairs(typed, out, sets_sorted):
                report["numbers"] += 1
                if not exact(text, value):
                    report["inexact"] += 1
                    lost = True
        report["lossy_items"] += lost
        try:
            bson.encode(converted)
            report["bson_encodable"] += 1
        except Exception:
            pass
    return dict(report)


def bench_conversion(reps: int, min_rep_s: float) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer
    from dynamodb_json import json_util

    folder = type_zoo_dir()
    items = type_zoo_items(folder)
    ours = Converter(native=replicator.accelerator.native).image  # as the Replicator's planner
    pure = Converter().image  # context: the same converter without the C part
    accelerated = replicator.accelerator.native is not None
    boto3 = boto3_image(TypeDeserializer())

    def ddb_json(item: Mapping[str, Any]) -> Any:
        return json_util.loads(item)  # takes the dict; json.dumps()es it and loads it back

    boto3_failing = failing_attributes(boto3, items)
    boto3_ok = handled(boto3, items)
    stripped = [{k: v for k, v in item.items() if k not in boto3_failing} for item in items]
    ready_all = [{k: boto3_ready(v) for k, v in item.items()} for item in items]
    ready_failing = failing_attributes(boto3, ready_all)
    ready = [{k: v for k, v in item.items() if k not in ready_failing} for item in ready_all]

    inputs: dict[str, tuple[list[dict[str, Any]], dict[str, Callable[[Any], Any]], str]] = {
        "full": (
            items,
            {"ours": ours, "dynamodb-json": ddb_json} | ({"boto3": boto3} if boto3_ok == items else {}),
            f"all {len(items)} type-zoo items (7 final items + the NewImages of events.json)",
        ),
        "stripped": (
            stripped,
            {"ours": ours, "boto3": boto3, "dynamodb-json": ddb_json},
            f"same items without the attributes boto3 raises on: {sorted(boto3_failing)}",
        ),
        "boto3-ready": (
            ready,
            {"ours": ours, "boto3": boto3},
            "B/BS as bytes (as get_records gives them), bare {} as {\"M\": {}}, without "
            f"{sorted(ready_failing)} (dynamodb-json cannot json.dumps bytes)",
        ),
    }
    # Context, no target: the ~10-attribute items of the (b) workload (mostly strings and small
    # integers, one decimal), as a Lambda event carries them and as boto3 wants them.
    rng = random.Random(20240603)
    realistic = [synthetic_item(rng, f"user#{i:06d}") for i in range(200)]
    inputs["realistic"] = (
        realistic, {"ours": ours, "dynamodb-json": ddb_json},
        "200 items of the (b) workload generator (B as base64 text, as in a Lambda event)",
    )
    inputs["realistic boto3-ready"] = (
        [{k: boto3_ready(v) for k, v in item.items()} for item in realistic],
        {"ours": ours, "boto3": boto3},
        "the same 200 items with B as bytes (as get_records gives them)",
    )
    results: dict[str, Any] = {
        "fixture": str(folder),
        "accelerated": accelerated,
        "items": len(items),
        "boto3_failed_items": len(items) - len(boto3_ok),
        "boto3_failing_attributes": boto3_failing,
        "boto3_failing_attributes_when_ready": ready_failing,
        "inputs": {},
    }
    for label, (data, contenders, description) in inputs.items():
        if accelerated:
            contenders = {**contenders, "ours, pure Python": pure}
        passes = calibrate(lambda data=data: [ours(i) for i in data], min_rep_s)

        def runner(convert: Callable[[Any], Any], data: list[Any] = data, passes: int = passes) -> None:
            for _ in range(passes):
                for item in data:
                    convert(item)

        times = interleaved(
            {name: (lambda c=convert: runner(c)) for name, convert in contenders.items()},
            reps,
            time.perf_counter,
        )
        rates = {name: passes * len(data) / median(t) for name, t in times.items()}
        results["inputs"][label] = {
            "description": description,
            "items": len(data),
            "items_per_s": rates,
            "speedup_vs": {name: rates["ours"] / rate for name, rate in rates.items() if name != "ours"},
            "loss": {
                name: loss_report(data, convert, sets_sorted=name.startswith("ours"))
                for name, convert in contenders.items()
            },
        }
    return results


