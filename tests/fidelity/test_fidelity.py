"""The fidelity corpus: each MongoDB behaviour the replicator relies on, on every available target.

Cases are data (behaviours.json, read like pymongo's bson corpus); this one generic test runs each
on mongoeco, on mongomock (the harness's ``mongomock`` backend), on a server named by
``MONGODB_URI`` and on a replica set in Docker (``docker``-marked). A target that deviates is named
in the case's ``deviations`` with the reason and runs as a strict xfail -- so ``pytest -ra`` prints
each target's list of deviations, and a deviation that disappears fails the run until the corpus is
updated.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateOne

from harness.backends.base import BackendUnavailable, TargetBackend, target_backend
from replicator.diff import bson_value

CORPUS = json.loads((Path(__file__).parent / "behaviours.json").read_text("utf-8"))
CASES: list[dict[str, Any]] = CORPUS["cases"]
#: (target, what it needs): the docker/URI targets skip with a reason where they cannot run.
TARGETS = {
    "mongoeco": "the mongoeco target needs Python >= 3.13 and mongoeco",
    "mongomock": "",
    "uri": "set MONGODB_URI to run the corpus on a MongoDB server",
    "testcontainers-replset": "needs a Docker engine",
}
_EXTENDED_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL,
                                       document_class=dict)


def _parameters() -> Iterator[Any]:
    for target in TARGETS:
        for case in CASES:
            marks = []
            if target == "uri" or target.startswith("testcontainers"):
                marks.append(pytest.mark.docker)  # a real server: `nox -s docker` runs them
            reason = case.get("deviations", {}).get(target)
            if reason:
                marks.append(pytest.mark.xfail(strict=True, reason=f"{target} deviates: {reason}"))
            yield pytest.param(target, case, marks=marks, id=f"{target}:{case['name']}")


def test_every_case_is_well_formed() -> None:
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert case["steps"] and case["relied_on_by"] and case["source"], case["name"]
        assert set(case.get("deviations", {})) <= set(TARGETS), case["name"]


@pytest.fixture(scope="module")
def targets() -> Iterator[dict[str, TargetBackend | str]]:
    """Started targets by name, started on first use; a string is why that target cannot run."""
    started: dict[str, TargetBackend | str] = {}
    yield started
    for backend in started.values():
        if not isinstance(backend, str):
            backend.stop()


def _target(targets: dict[str, TargetBackend | str], name: str) -> TargetBackend:
    if name not in targets:
        targets[name] = _start(name)
    backend = targets[name]
    if isinstance(backend, str):
        pytest.skip(backend)
    return backend


def _start(name: str) -> TargetBackend | str:
    if name == "uri" and not os.environ.get("MONGODB_URI"):
        return TARGETS[name]
    if name.startswith("testcontainers"):
        from harness.backends.mongo_topology import docker_skip_reason

        reason = docker_skip_reason()
        if reason:
            return reason
    backend = target_backend(name)
    try:
        backend.start()
    except BackendUnavailable as error:
        backend.stop()
        return f"{TARGETS[name]}: {error}"
    return backend


@pytest.mark.parametrize(("target", "case"), list(_parameters()))
def test_behaviour(target: str, case: dict[str, Any], targets: Any) -> None:
    backend = _target(targets, target)
    collection = backend.collection(f"fidelity_{uuid.uuid4().hex[:10]}", "behaviour")
    try:
        for position, step in enumerate(case["steps"]):
            _run_step(collection, step, f"{case['name']} step {position} ({step['op']})")
    finally:
        collection.database.client.drop_database(collection.database.name)


# -- the step language ---------------------------------------------------------------------------
def _value(data: Any, collection: Any = None) -> Any:
    """Extended JSON -> Python (bson types), with two generators: ``{"$$nested": n}`` (n nested
    documents) and ``"$$collection"`` (the case's collection name)."""
    data = _expand(data, collection)
    return json_util.loads(json.dumps(data), json_options=_EXTENDED_JSON)


def _expand(data: Any, collection: Any) -> Any:
    if data == "$$collection":
        return collection.name
    if isinstance(data, Mapping):
        if set(data) == {"$$nested"}:
            value: Any = 1
            for _ in range(int(data["$$nested"])):
                value = {"a": value}
            return value
        return {name: _expand(item, collection) for name, item in data.items()}
    if isinstance(data, list):
        return [_expand(item, collection) for item in data]
    return data


_REQUESTS = {
    "InsertOne": lambda a: InsertOne(a["document"]),
    "DeleteOne": lambda a: DeleteOne(a["filter"]),
    "ReplaceOne": lambda a: ReplaceOne(a["filter"], a["replacement"], upsert=a.get("upsert", False)),
    "UpdateOne": lambda a: UpdateOne(a["filter"], a["update"], upsert=a.get("upsert", False)),
}


def _call(collection: Any, step: Mapping[str, Any], session: Any = None) -> Any:
    op = step["op"]
    value = _value(step, collection)
    if op == "insert_one":
        return collection.insert_one(value["document"], session=session)
    if op == "insert_many":
        return collection.insert_many(value["documents"], session=session)
    if op == "delete_one":
        return collection.delete_one(value["filter"], session=session)
    if op == "update_one":
        return collection.update_one(value["filter"], value["update"],
                                     upsert=value.get("upsert", False), session=session)
    if op == "bulk_write":
        requests = [_REQUESTS[kind](arguments) for request in value["requests"]
                    for kind, arguments in request.items()]
        return collection.bulk_write(requests, ordered=value.get("ordered", True), session=session)
    if op == "find":
        cursor = collection.find(value["filter"], session=session)
        if value.get("sort"):
            cursor = cursor.sort([tuple(pair) for pair in value["sort"]])
        return list(cursor)
    if op == "find_one":
        return collection.find_one(value["filter"], session=session)
    if op == "count":
        return collection.count_documents(value["filter"], session=session)
    if op == "create_index":
        return collection.create_index([tuple(pair) for pair in value["keys"]],
                                       **value.get("options", {}))
    if op == "index_information":
        return collection.index_information()
    if op == "command":
        return collection.database.command(value["command"])
    if op == "transaction":
        client = collection.database.client
        with client.start_session() as new_session:
            new_session.with_transaction(
                lambda s: [_call(collection, inner, s) for inner in step["steps"]])
        return None
    raise AssertionError(f"unknown op {op!r}")


def _run_step(collection: Any, step: Mapping[str, Any], where: str) -> None:
    expect = step.get("expect", {})
    try:
        result = _call(collection, step)
    except Exception as error:
        wanted = expect.get("error")
        if wanted is None:
            raise AssertionError(f"{where}: unexpected {type(error).__name__}: {error}") from error
        _match_error(error, _value(wanted), where)
        return
    assert "error" not in expect, f"{where}: expected {expect['error']}, got {result!r:.300}"
    if "documents" in expect:
        wanted = _value(expect["documents"])
        assert [bson_value(d) for d in result] == [bson_value(d) for d in wanted], (
            f"{where}: documents {result!r} != {wanted!r}")
    if "python_types" in expect:
        actual = {name: type(result[name]).__name__ for name in expect["python_types"]}
        assert actual == expect["python_types"], where
    if "result" in expect:
        _match(_result_data(result), _value(expect["result"]), where)


def _result_data(result: Any) -> Any:
    """pymongo's result objects as data; other results as they are."""
    if hasattr(result, "upserted_ids") and hasattr(result, "matched_count"):  # BulkWriteResult
        return {"inserted_count": result.inserted_count, "matched_count": result.matched_count,
                "modified_count": result.modified_count, "deleted_count": result.deleted_count,
                "upserted_count": result.upserted_count,
                "upserted_ids": {str(k): v for k, v in result.upserted_ids.items()}}
    if hasattr(result, "matched_count"):  # UpdateResult
        return {"matched_count": result.matched_count, "modified_count": result.modified_count,
                "upserted_id": result.upserted_id}
    if isinstance(result, Mapping):
        return {name: _listed(value) for name, value in result.items()}
    return result


def _listed(value: Any) -> Any:
    # index_information() gives key specs as tuples; the corpus writes them as lists
    if isinstance(value, Mapping):
        return {name: _listed(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listed(item) for item in value]
    return value


def _match_error(error: BaseException, wanted: Mapping[str, Any], where: str) -> None:
    names = [cls.__name__ for cls in type(error).__mro__]
    assert wanted["type"] in names, f"{where}: expected {wanted['type']}, got {names[0]}: {error}"
    if "code" in wanted:
        assert getattr(error, "code", None) == wanted["code"], f"{where}: {error}"
    if "details" in wanted:
        _match(getattr(error, "details", None), wanted["details"], where)


def _match(actual: Any, wanted: Any, where: str, path: str = "") -> None:
    """``wanted`` is a subset of ``actual``: maps by key, lists element by element (same length),
    scalars by BSON value (an int64 value matches whether pymongo gives ``Int64`` or ``int``)."""
    if isinstance(wanted, Mapping):
        assert isinstance(actual, Mapping), f"{where}: {path or 'result'} is {actual!r}"
        for name, item in wanted.items():
            assert name in actual, f"{where}: {path}.{name} missing in {actual!r:.300}"
            _match(actual[name], item, where, f"{path}.{name}")
        return
    if isinstance(wanted, list):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(wanted), (
            f"{where}: {path} is {actual!r:.300}, expected {wanted!r:.300}")
        for position, (a, w) in enumerate(zip(actual, wanted, strict=True)):
            _match(a, w, where, f"{path}[{position}]")
        return
    same = bson_value(actual) == bson_value(wanted) or (
        isinstance(actual, int) and isinstance(wanted, int) and actual == wanted
        and not isinstance(actual, bool) and not isinstance(wanted, bool))
    assert same, f"{where}: {path} is {actual!r}, expected {wanted!r}"
