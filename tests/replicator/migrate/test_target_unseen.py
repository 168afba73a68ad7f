"""Inputs of the kinds of issue 22 part 3 that test_target.py did not write: the plan and prepare
broken on purpose (attributes the replicator writes itself, twins across GSI and LSI, filters the
server keeps as given, DescribeTable as moto answers it, transforms that return nonsense)."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient

from replicator.migrate.target import describe, parse_shard_key, plan_target, prepare
from replicator.settings import Settings
from support.mongo_commands import Commands

HERE = __name__


def _table(**extra: Any) -> dict[str, Any]:
    return {"TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], **extra}


def _gsi(name: str, *keys: str, **extra: Any) -> dict[str, Any]:
    kinds = ("HASH", "RANGE")
    return {"IndexName": name, "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": k, "KeyType": kinds[n]} for n, k in enumerate(keys)],
            **extra}


def test_attributes_named_like_the_replicators_own_fields_are_not_indexed() -> None:
    plan = plan_target(_table(GlobalSecondaryIndexes=[_gsi("byId", "_id"),
                                                      _gsi("bySeq", "_ddb_seq"),
                                                      _gsi("fine", "x")]))
    assert [i.name for i in plan.indexes] == ["fine"]
    assert [s.source for s in plan.skipped] == ["GSI byId", "GSI bySeq"]
    assert all("writes itself" in s.reason for s in plan.skipped)
    # without the guard there is no sequence field: an attribute of that name is a field
    unguarded = plan_target(_table(GlobalSecondaryIndexes=[_gsi("bySeq", "_ddb_seq")]),
                            settings=Settings(guard=False, tombstones=False))
    assert [i.name for i in unguarded.indexes] == ["bySeq"]


def test_a_gsi_and_an_lsi_on_the_same_keys_are_one_index() -> None:
    table = _table(KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}],
                   GlobalSecondaryIndexes=[_gsi("g", "pk", "x", IndexStatus="CREATING")],
                   LocalSecondaryIndexes=[_gsi("l", "pk", "x")])
    plan = plan_target(table)
    assert [(i.kind, i.name, i.partial) for i in plan.indexes] == [
        ("GSI", "g", {"x": {"$exists": True}})]  # an index still CREATING is planned too
    assert plan.skipped[0].source == "LSI l"


def test_a_transform_dropping_the_partition_key_is_noted_for_the_shard_key() -> None:
    plan = plan_target(_table(), settings=Settings(transforms=(f"{HERE}:drop_pk",),
                                                   shard_key=("pk",)))
    assert any("shard key field(s) ['pk'] are not in the document" in n for n in plan.notes)


def drop_pk(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "pk"}


def not_a_document(document: dict[str, Any]) -> Any:
    return ["not", "a", "document"]


def test_a_transform_returning_no_document_is_reported_not_a_crash() -> None:
    plan = plan_target(_table(GlobalSecondaryIndexes=[_gsi("g", "x")]),
                       settings=Settings(transforms=(f"{HERE}:not_a_document",)))
    # the replicator quarantines every record of such a transform (TransformError); the plan
    # keeps the index on the attribute's name and says it could not check
    assert [i.name for i in plan.indexes] == ["g"] and plan.skipped == ()
    assert any("could not be run on a sample item (TransformError" in n and "returned list" in n
               for n in plan.notes)


def test_shard_key_kind_in_capitals() -> None:
    assert parse_shard_key("pk:HASHED") == (("pk", "hashed"),)


def test_a_partial_filter_the_server_keeps_as_exists_1_is_the_same_index(mongoeco_db: Any) -> None:
    collection = mongoeco_db["t"]
    collection.create_index([("x", 1)], name="g", partialFilterExpression={"x": {"$exists": 1}})
    report = prepare(collection, plan_target(_table(GlobalSecondaryIndexes=[_gsi("g", "x")])))
    assert report.commands == [] and report.unchanged == ["index 'g' (GSI g)"]


def test_a_table_without_indexes_sends_no_create(mongoeco_server_uri: str, mongoeco_db: Any) -> None:
    commands = Commands()
    with MongoClient(mongoeco_server_uri, event_listeners=[commands]) as client:
        report = prepare(client[mongoeco_db.name]["t"], plan_target(_table()))
    names = [name for name, _ in commands.sent]
    assert "createIndexes" not in names and report.commands == []


def test_the_plan_from_motos_describe_table(moto: Any) -> None:
    """DescribeTable as a service answers it (IndexStatus, IndexArn, ItemCount, throughput...)."""
    client = moto.dynamodb()
    client.create_table(
        TableName="real", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              [("pk", "S"), ("sk", "B"), ("g", "N")]],
        GlobalSecondaryIndexes=[_gsi("byG", "g", "sk")])
    table, ttl = describe(client, "real")
    plan = plan_target(table, time_to_live=ttl)
    assert [(i.name, i.keys, i.partial) for i in plan.indexes] == [
        ("byG", (("g", 1), ("sk", 1)), {"g": {"$exists": True}})]
    assert plan.ttl_attribute is None and plan.key_schema == ("pk", "sk")
