"""The target prepared from the table (replicator/migrate/target.py) on real MongoDB in Docker: a
sharded cluster (mongos: enableSharding + shardCollection, then the indexes; the replicator
writes into the collection it sharded) and a replica set (indexes only). Marked ``docker`` and
skipped without a Docker engine by this folder's conftest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.base import target_backend
from replicator.core import Replicator
from replicator.errors import ConfigurationError
from replicator.migrate.target import TargetPlan, is_sharded_cluster, plan_target, prepare
from replicator.settings import Settings
from support.fixtures import lambda_stream_record

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DATABASE = "prepare_it"
TABLE: dict[str, Any] = {
    "TableName": "orders",
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                  {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in
                             [("pk", "S"), ("sk", "N"), ("email", "S"), ("total", "N")]],
    "GlobalSecondaryIndexes": [{"IndexName": "byEmail", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}]}],
    "LocalSecondaryIndexes": [{"IndexName": "byTotal", "Projection": {"ProjectionType": "ALL"},
                               "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                             {"AttributeName": "total", "KeyType": "RANGE"}]}],
}
SETTINGS = Settings(key_schema=("pk", "sk"), shard_key=("pk",))


@pytest.fixture(scope="module", params=["testcontainers-sharded", "testcontainers-replset"])
def topology(request: pytest.FixtureRequest) -> Iterator[Any]:
    backend = target_backend(request.param)
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


def _fresh(topology: Any) -> Any:
    return topology.client[DATABASE][f"orders_{uuid.uuid4().hex[:8]}"]


def _plan(**options: Any) -> TargetPlan:
    return plan_target(TABLE, settings=options.pop("settings", SETTINGS), **options)


def test_prepare_shards_then_indexes_and_a_rerun_changes_nothing(topology: Any) -> None:
    collection = _fresh(topology)
    sharded = topology.name == "testcontainers-sharded"
    assert is_sharded_cluster(topology.client) is sharded
    report = prepare(collection, _plan())
    names = {i["name"] for i in collection.list_indexes()}
    assert {"_id_", "byEmail", "byTotal"} <= names
    byEmail = next(i for i in collection.list_indexes() if i["name"] == "byEmail")
    assert dict(byEmail["partialFilterExpression"]) == {"email": {"$exists": True}}
    assert not byEmail.get("unique")
    entry = topology.client["config"]["collections"].find_one(
        {"_id": collection.full_name})
    if sharded:
        assert report.commands[0].startswith("db.adminCommand({\"enableSharding\"")
        assert entry is not None and dict(entry["key"]) == {"pk": "hashed"}
    else:
        assert entry is None and len(report.commands) == 2
    again = prepare(collection, _plan())
    assert again.commands == []

    # the replicator writes into what prepare made (its upserts carry the shard key)
    replicator = Replicator(collection, SETTINGS)
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "email": {"S": "x@y"}}
    result = replicator.process({"Records": [lambda_stream_record(
        "100", keys={"pk": item["pk"], "sk": item["sk"]}, new=item)]})
    assert not result.failures and not result.quarantined
    found = list(collection.find({"email": "x@y"}).hint("byEmail"))
    assert [d["pk"] for d in found] == ["a"]


def test_a_collection_sharded_on_another_key_is_named_with_the_command(topology: Any) -> None:
    if topology.name != "testcontainers-sharded":
        pytest.skip("sharding needs the sharded cluster")
    collection = _fresh(topology)
    prepare(collection, _plan())
    other = Settings(key_schema=("pk", "sk"), shard_key=("pk", "sk"))
    with pytest.raises(ConfigurationError, match="reshardCollection"):
        prepare(collection, _plan(settings=other, shard_key="pk,sk"))


def test_a_filled_collection_gets_the_shard_keys_index_first(topology: Any) -> None:
    if topology.name != "testcontainers-sharded":
        pytest.skip("sharding needs the sharded cluster")
    collection = _fresh(topology)
    collection.insert_many([{"_id": n, "pk": str(n)} for n in range(10)])
    report = prepare(collection, _plan(), create_indexes=False)
    assert report.commands[1].endswith('.createIndex({"pk": "hashed"})')
    entry = topology.client["config"]["collections"].find_one({"_id": collection.full_name})
    assert entry is not None and dict(entry["key"]) == {"pk": "hashed"}
