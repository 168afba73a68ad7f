"""The target prepared from the table (replicator/migrate/target.py): the plan from DescribeTable's
shapes, the plan applied to mongoeco through the real pymongo client (idempotent, conflicts named),
the sharding commands as sent, and `replicator prepare --dry-run` against moto's DescribeTable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from pymongo import MongoClient

from replicator.errors import ConfigurationError
from replicator.migrate.target import (
    IndexPlan,
    ShardPlan,
    TargetPlan,
    index_command,
    parse_shard_key,
    plan_target,
    prepare,
    shard_command_documents,
    shard_commands,
)
from replicator.settings import Settings
from support.mongo_commands import Commands
from support.replicator_command import run_replicator


def _key(hash_name: str, range_name: str | None = None) -> list[dict[str, str]]:
    key = [{"AttributeName": hash_name, "KeyType": "HASH"}]
    if range_name:
        key.append({"AttributeName": range_name, "KeyType": "RANGE"})
    return key


def _table(key: tuple[str, ...] = ("pk", "sk"), types: dict[str, str] | None = None,
           gsis: Sequence[dict[str, Any]] = (), lsis: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    types = {"pk": "S", "sk": "S", **(types or {})}
    table: dict[str, Any] = {
        "TableName": "orders", "KeySchema": _key(*key),
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in types.items()],
    }
    if gsis:
        table["GlobalSecondaryIndexes"] = list(gsis)
    if lsis:
        table["LocalSecondaryIndexes"] = list(lsis)
    return table


def _index(name: str, hash_name: str, range_name: str | None = None,
           projection: str = "ALL", include: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"IndexName": name, "KeySchema": _key(hash_name, range_name),
                            "Projection": {"ProjectionType": projection}}
    if include:
        spec["Projection"]["NonKeyAttributes"] = list(include)
    return spec


# -- the plan -------------------------------------------------------------------------------------
def test_a_gsi_on_a_partition_key_alone_is_a_partial_index_on_that_field() -> None:
    plan = plan_target(_table(gsis=[_index("byEmail", "email")], types={"email": "S"}))
    assert plan.indexes == (IndexPlan("byEmail", (("email", 1),),
                                      {"email": {"$exists": True}}, "GSI", "byEmail"),)
    assert plan.indexes[0].spec() == {"key": {"email": 1}, "name": "byEmail",
                                      "partialFilterExpression": {"email": {"$exists": True}}}
    assert plan.skipped == () and plan.key_schema == ("pk", "sk")


def test_a_gsi_with_a_sort_key_keeps_the_key_order_and_filters_on_both() -> None:
    # A number sort key and a binary partition key: the type of a key does not change its index.
    plan = plan_target(_table(gsis=[_index("byDay", "blob", "day")],
                              types={"blob": "B", "day": "N"}))
    (index,) = plan.indexes
    assert list(index.keys) == [("blob", 1), ("day", 1)]
    assert list(index.spec()["key"]) == ["blob", "day"]  # the order is the key's
    assert index.partial == {"blob": {"$exists": True}, "day": {"$exists": True}}


def test_an_lsi_is_the_partition_key_then_its_sort_key_filtered_on_the_sort_key_only() -> None:
    plan = plan_target(_table(lsis=[_index("byTotal", "pk", "total")], types={"total": "N"}))
    (index,) = plan.indexes
    assert (index.kind, index.keys) == ("LSI", (("pk", 1), ("total", 1)))
    # every item has the table's partition key: only the LSI's sort key can be missing
    assert index.partial == {"total": {"$exists": True}}


def test_a_gsi_on_table_key_attributes_only_needs_no_partial_filter() -> None:
    plan = plan_target(_table(gsis=[_index("bySort", "sk", "pk")]))
    (index,) = plan.indexes
    assert index.partial == {} and "partialFilterExpression" not in index.spec()
    assert index.keys == (("sk", 1), ("pk", 1))


def test_no_index_is_unique_whatever_its_kind() -> None:
    plan = plan_target(_table(gsis=[_index("g1", "a"), _index("g2", "b", "c")],
                              lsis=[_index("l1", "pk", "d")],
                              types={"a": "S", "b": "N", "c": "B", "d": "S"}))
    assert [i.name for i in plan.indexes] == ["g1", "g2", "l1"]
    assert all("unique" not in i.spec() for i in plan.indexes)


def test_the_projection_does_not_change_the_index_and_twins_are_one_index() -> None:
    keys_only = plan_target(_table(gsis=[_index("g", "a", projection="KEYS_ONLY")]))
    include = plan_target(_table(gsis=[_index("g", "a", projection="INCLUDE", include=("x",))]))
    everything = plan_target(_table(gsis=[_index("g", "a")]))
    assert keys_only.indexes == include.indexes == everything.indexes
    # two GSIs differing only in projection: MongoDB would refuse the second (same key, another
    # name), and it would hold the same documents anyway
    twins = plan_target(_table(gsis=[_index("g", "a", projection="KEYS_ONLY"), _index("h", "a")]))
    assert [i.name for i in twins.indexes] == ["g"]
    assert twins.skipped[0].source == "GSI h" and "GSI g" in twins.skipped[0].reason


def test_an_index_named_like_mongodbs_id_index_is_renamed() -> None:
    plan = plan_target(_table(gsis=[_index("_id_", "a")]))
    assert plan.indexes[0].name == "gsi__id_" and plan.indexes[0].source == "_id_"


def test_an_attribute_name_an_index_key_cannot_address_is_skipped_with_the_reason() -> None:
    plan = plan_target(_table(gsis=[_index("dotted", "a.b"), _index("fine", "c")]))
    assert [i.name for i in plan.indexes] == ["fine"]
    assert plan.skipped[0].source == "GSI dotted" and "'a.b'" in plan.skipped[0].reason


def test_the_ttl_attribute_is_noted_and_never_indexed() -> None:
    on = plan_target(_table(), time_to_live={"TimeToLiveStatus": "ENABLED",
                                             "AttributeName": "expires"})
    assert on.ttl_attribute == "expires" and on.indexes == ()
    (note,) = [n for n in on.notes if "TTL attribute" in n]
    assert "'expires'" in note and "BSON dates" in note and "'delete'" in note
    off = plan_target(_table(), time_to_live={"TimeToLiveStatus": "DISABLED"})
    assert off.ttl_attribute is None and not any("TTL attribute" in n for n in off.notes)


# -- transforms and id_mapping --------------------------------------------------------------------
def drop_email(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "email"}


def rename_email(document: dict[str, Any]) -> dict[str, Any]:
    document = dict(document)
    if "email" in document:
        document["mail"] = document.pop("email")
    return document


def needs_total(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "cents": document["total"] * 100}


def id_as_text(key: dict[str, Any]) -> str:
    return "#".join(str(v) for v in key.values())


HERE = __name__


@pytest.mark.parametrize("transform", ["drop_email", "rename_email"])
def test_a_transform_that_removes_an_index_attribute_skips_its_index_and_says_so(
    transform: str,
) -> None:
    settings = Settings(transforms=(f"{HERE}:{transform}",))
    plan = plan_target(_table(gsis=[_index("byEmail", "email"), _index("byDay", "day")],
                              types={"email": "S", "day": "N"}), settings=settings)
    assert [i.name for i in plan.indexes] == ["byDay"]
    (skipped,) = plan.skipped
    assert skipped.source == "GSI byEmail" and "'email'" in skipped.reason
    assert "transform" in skipped.reason


def test_a_transform_that_refuses_the_sample_item_is_reported_not_guessed_silently() -> None:
    plan = plan_target(_table(gsis=[_index("byEmail", "email")]),
                       settings=Settings(transforms=(f"{HERE}:needs_total",)))
    assert [i.name for i in plan.indexes] == ["byEmail"]
    assert any("could not be run on a sample item" in n and "KeyError" in n for n in plan.notes)


def test_an_id_mapping_keeps_the_key_attributes_as_fields() -> None:
    plan = plan_target(_table(lsis=[_index("byTotal", "pk", "total")], types={"total": "N"}),
                       settings=Settings(id_mapping=f"{HERE}:id_as_text"))
    assert plan.indexes[0].keys == (("pk", 1), ("total", 1)) and plan.skipped == ()


def test_a_transform_that_cannot_be_loaded_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nowhere"):
        plan_target(_table(), settings=Settings(transforms=("nowhere.at_all:f",)))


# -- the shard key --------------------------------------------------------------------------------
def test_the_default_shard_key_is_hashed_on_the_partition_key_and_needs_the_setting() -> None:
    plan = plan_target(_table())
    assert plan.shard is not None and plan.shard.key == (("pk", "hashed"),)
    assert plan.shard.origin == "default"
    assert plan.shard.refusal is not None and "REPLICATOR_SHARD_KEY=pk " in plan.shard.refusal
    told = plan_target(_table(), settings=Settings(shard_key=("pk",)))
    assert told.shard == ShardPlan((("pk", "hashed"),), "Settings.shard_key")


def test_a_user_shard_key_must_name_the_settings_fields() -> None:
    settings = Settings(shard_key=("tenant", "pk"))
    plan = plan_target(_table(), settings=settings, shard_key="tenant,pk:hashed")
    assert plan.shard == ShardPlan((("tenant", 1), ("pk", "hashed")), "--shard-key")
    assert any("['tenant']" in n and "NEW_AND_OLD_IMAGES" in n for n in plan.notes)
    assert not any("are not in the document" in n for n in plan.notes)  # tenant is an attribute
    with pytest.raises(ConfigurationError, match=r"REPLICATOR_SHARD_KEY .* is \['tenant', 'pk'\]"):
        plan_target(_table(), settings=settings, shard_key=["pk:hashed"])


@pytest.mark.parametrize(("given", "expected"), [
    ("pk:hashed", (("pk", "hashed"),)),
    (" tenant , pk ", (("tenant", 1), ("pk", 1))),
    (["tenant:1", "pk:hashed"], (("tenant", 1), ("pk", "hashed"))),
    ({"pk": "hashed"}, (("pk", "hashed"),)),
])
def test_shard_key_spellings(given: Any, expected: Any) -> None:
    assert parse_shard_key(given) == expected


@pytest.mark.parametrize("given", ["", "a:hashed,b:hashed", "a:-1", "a,a", "$a", {"a": True}])
def test_shard_keys_mongodb_refuses_are_refused_first(given: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_shard_key(given)


def test_the_shard_commands_as_sent_and_as_printed() -> None:
    shard = ShardPlan((("tenant", 1), ("pk", "hashed")), "--shard-key")
    documents = shard_command_documents("shop", "orders", shard)
    assert documents == [{"enableSharding": "shop"},
                         {"shardCollection": "shop.orders", "key": {"tenant": 1, "pk": "hashed"}}]
    assert [next(iter(d)) for d in documents] == ["enableSharding", "shardCollection"]
    lines = shard_commands("shop", "orders", shard)
    assert [json.loads(line[len("db.adminCommand("):-1]) for line in lines] == documents


#: what pymongo sends on its own (handshake, closing its sessions)
MONITORING = frozenset({"hello", "isMaster", "ismaster", "endSessions"})


# -- applied to mongoeco (real pymongo) -----------------------------------------------------------
def _full_plan() -> TargetPlan:
    return plan_target(
        _table(gsis=[_index("byEmail", "email"), _index("byDay", "blob", "day")],
               lsis=[_index("byTotal", "pk", "total")],
               types={"email": "S", "blob": "B", "day": "N", "total": "N"}),
        time_to_live={"TimeToLiveStatus": "ENABLED", "AttributeName": "expires"})


def _listed(collection: Any) -> dict[str, dict[str, Any]]:
    return {i["name"]: {"key": list(i["key"].items()),
                        "partial": json.loads(json.dumps(i.get("partialFilterExpression", {}))),
                        "unique": bool(i.get("unique"))}
            for i in collection.list_indexes() if i["name"] != "_id_"}


def test_prepare_makes_the_planned_indexes_and_a_rerun_changes_nothing(mongoeco_db: Any) -> None:
    collection = mongoeco_db["orders"]
    plan = _full_plan()
    report = prepare(collection, plan)
    assert report.sharded_cluster is False
    assert report.commands == [index_command(mongoeco_db.name, "orders", i) for i in plan.indexes]
    assert _listed(collection) == {
        i.name: {"key": list(i.keys), "partial": dict(i.partial), "unique": False}
        for i in plan.indexes}
    assert any("not a sharded cluster" in n for n in report.notes)

    again = prepare(collection, plan)
    assert again.commands == [] and len(again.unchanged) == 3


def test_the_partial_indexes_hold_only_items_with_the_attributes(mongoeco_db: Any) -> None:
    collection = mongoeco_db["orders"]
    prepare(collection, _full_plan())
    collection.insert_many([{"_id": 1, "pk": "a", "email": "x@y"}, {"_id": 2, "pk": "b"}])
    found = list(collection.find({"email": "x@y"}).hint("byEmail"))
    assert [d["_id"] for d in found] == [1]


def test_a_dry_run_lists_the_commands_and_makes_nothing(mongoeco_db: Any) -> None:
    collection = mongoeco_db["orders"]
    collection.insert_one({"_id": "seed"})
    report = prepare(collection, _full_plan(), dry_run=True)
    assert len(report.commands) == 3 and _listed(collection) == {}
    lines = report.lines(dry_run=True)
    assert lines[0].startswith(f"// would run on {mongoeco_db.name}.orders: 3 command(s)")
    assert lines[1] == (f'db.getSiblingDB("{mongoeco_db.name}").getCollection("orders")'
                        '.createIndex({"email": 1}, {"name": "byEmail", "partialFilterExpression": '
                        '{"email": {"$exists": true}}})')


def test_an_index_of_the_same_name_with_another_definition_stops_prepare(mongoeco_db: Any) -> None:
    collection = mongoeco_db["orders"]
    collection.create_index([("email", 1)], name="byEmail", unique=True)
    with pytest.raises(ConfigurationError) as raised:
        prepare(collection, _full_plan())
    message = str(raised.value)
    assert "index 'byEmail'" in message and ".dropIndex(\"byEmail\")" in message
    assert "--no-indexes" in message
    assert set(_listed(collection)) == {"byEmail"}  # nothing else was made


def test_an_equal_index_under_another_name_is_kept(mongoeco_db: Any) -> None:
    collection = mongoeco_db["orders"]
    collection.create_index([("email", 1)], name="mine",
                            partialFilterExpression={"email": {"$exists": True}})
    report = prepare(collection, _full_plan())
    assert "index 'byEmail' (GSI byEmail) exists as 'mine'" in report.unchanged
    assert set(_listed(collection)) == {"mine", "byDay", "byTotal"}


def test_no_indexes_makes_none(mongoeco_db: Any) -> None:
    report = prepare(mongoeco_db["orders"], _full_plan(), create_indexes=False)
    assert report.commands == [] and _listed(mongoeco_db["orders"]) == {}
    assert any("3 index(es) not made" in n for n in report.notes)


def test_on_a_sharded_cluster_without_the_setting_prepare_refuses_before_sending(
    mongoeco_server_uri: str, mongoeco_db: Any,
) -> None:
    commands = Commands()
    with MongoClient(mongoeco_server_uri, event_listeners=[commands]) as client:
        collection = client[mongoeco_db.name]["orders"]
        with pytest.raises(ConfigurationError, match="REPLICATOR_SHARD_KEY=pk "):
            prepare(collection, _full_plan(), sharded=True)
    assert [name for name, _ in commands.sent if name not in MONITORING] == []


def test_the_shard_commands_go_out_first_as_planned(mongoeco_server_uri: str,
                                                     mongoeco_db: Any) -> None:
    """mongoeco is no mongos: it refuses enableSharding, which shows what was sent and that
    nothing else followed (the whole sequence runs in test_real_mongodb's sharded cluster)."""
    from pymongo.errors import OperationFailure

    commands = Commands()
    plan = plan_target(_table(gsis=[_index("byEmail", "email")]),
                       settings=Settings(shard_key=("pk",)))
    with MongoClient(mongoeco_server_uri, event_listeners=[commands]) as client:
        collection = client[mongoeco_db.name]["orders"]
        with pytest.raises(OperationFailure, match="enableSharding"):
            prepare(collection, plan, sharded=True)
    sent = [(name, body) for name, body in commands.sent if name not in MONITORING]
    # config.collections (already sharded?), the collection's count (empty: shardCollection
    # makes the key's index), then enableSharding -- refused here, so nothing after it
    assert [name for name, _ in sent] == ["find", "count", "enableSharding"]
    assert sent[0][1]["find"] == "collections" and sent[0][1]["$db"] == "config"
    assert sent[-1][1]["enableSharding"] == mongoeco_db.name and sent[-1][1]["$db"] == "admin"


# -- the command line -----------------------------------------------------------------------------
@pytest.mark.slow
def test_replicator_prepare_dry_run_against_motos_describe_table(
    moto_server: Any, mongoeco_server_uri: str,
) -> None:
    client = moto_server.dynamodb()
    client.create_table(
        TableName="shop", BillingMode="PAY_PER_REQUEST", KeySchema=_key("pk", "sk"),
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              [("pk", "S"), ("sk", "N"), ("email", "S"), ("total", "N")]],
        GlobalSecondaryIndexes=[_index("byEmail", "email", projection="KEYS_ONLY")],
        LocalSecondaryIndexes=[_index("byTotal", "pk", "total")],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    client.update_time_to_live(TableName="shop", TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires"})
    base = ["--table", "shop", "--endpoint-url", moto_server.endpoint_url(), "--database", "app"]

    # without MongoDB: the plan as a sharded cluster would get it
    done = run_replicator("prepare", *base, "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "// would run on app.shop: 4 command(s); topology not asked (no MongoDB)",
        'db.adminCommand({"enableSharding": "app"})',
        'db.adminCommand({"shardCollection": "app.shop", "key": {"pk": "hashed"}})',
        'db.getSiblingDB("app").getCollection("shop").createIndex({"email": 1}, '
        '{"name": "byEmail", "partialFilterExpression": {"email": {"$exists": true}}})',
        'db.getSiblingDB("app").getCollection("shop").createIndex({"pk": 1, "total": 1}, '
        '{"name": "byTotal", "partialFilterExpression": {"total": {"$exists": true}}})',
    ]
    assert any(line.startswith("// note: would refuse:") for line in lines)
    assert any("TTL attribute 'expires'" in line for line in lines)

    # with MongoDB (mongoeco: not sharded): the indexes only, and nothing made
    uri = f"{mongoeco_server_uri}?directConnection=true"
    done = run_replicator("prepare", *base, "--mongodb-uri", uri, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == ("// would run on app.shop: 2 command(s); "
                                          "not a sharded cluster")
    done = run_replicator("prepare", *base, "--mongodb-uri", uri)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "// ran on app.shop: 2 command(s); not a sharded cluster"
    done = run_replicator("prepare", *base, "--mongodb-uri", uri)
    assert done.stdout.splitlines()[0] == "// ran on app.shop: 0 command(s); not a sharded cluster"
    with MongoClient(uri) as mongo:
        assert {i["name"] for i in mongo["app"]["shop"].list_indexes()} == {
            "_id_", "byEmail", "byTotal"}
        mongo.drop_database("app")

    done = run_replicator("prepare", *base, "--shard-key", "a:hashed,b:hashed", "--dry-run")
    assert done.returncode == 2 and "at most one hashed field" in done.stderr


@pytest.mark.slow
def test_sync_prepares_the_target_before_its_copy_unless_told_not_to(
    moto: Any, wire_target: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from replicator import cli
    from replicator.cli import commands, endpoints
    from replicator.poller.checkpoints import CheckpointStore

    client = moto.dynamodb()
    for table in ("prepared", "unprepared"):
        client.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=_key("pk"),
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "email", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[_index("byEmail", "email")],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        client.put_item(TableName=table, Item={"pk": {"S": "a"}, "email": {"S": "x@y"}})
        client.put_item(TableName=table, Item={"pk": {"S": "b"}})

    class Target:
        def __init__(self, args: Any, environ: Any) -> None:
            self.collection = wire_target.collection("synced", args.table)
            self.checkpoints = CheckpointStore.beside(self.collection, table=args.table)

        def close(self) -> None:
            pass

    monkeypatch.setattr(endpoints, "Target", Target)
    monkeypatch.setattr(endpoints, "aws_clients", lambda args, environ: (moto.streams(), client))
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)
    for table, extra in (("prepared", []), ("unprepared", ["--no-prepare"])):
        assert cli.main(["sync", "--table", table, "--mongodb-uri", "mongodb://unused",
                         "--segments", "1", "--no-progress", *extra]) == 0
    prepared = wire_target.collection("synced", "prepared")
    assert set(_listed(prepared)) == {"byEmail"}
    assert [d["pk"] for d in prepared.find({"email": "x@y"}).hint("byEmail")] == ["a"]
    assert _listed(wire_target.collection("synced", "unprepared")) == {}


@pytest.mark.slow
def test_prepare_with_a_migration_file_takes_each_tables_own_options(
    moto_server: Any, tmp_path: Any,
) -> None:
    """``replicator prepare --migration-file F --dry-run``: each table's entry decides
    (create_indexes, shard_key), as ``sync --migration-file`` prepares it before its copy."""
    client = moto_server.dynamodb()
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    client.create_table(
        TableName="orders", BillingMode="PAY_PER_REQUEST", KeySchema=_key("pk"),
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              [("pk", "S"), ("customer", "S")]],
        GlobalSecondaryIndexes=[_index("byCustomer", "customer")], StreamSpecification=stream)
    client.create_table(
        TableName="lines", BillingMode="PAY_PER_REQUEST", KeySchema=_key("order_id", "line"),
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              [("order_id", "S"), ("line", "N"), ("sku", "S")]],
        GlobalSecondaryIndexes=[_index("bySku", "sku")], StreamSpecification=stream)
    migration = tmp_path / "app.toml"
    migration.write_text(
        '[defaults]\ndatabase = "app"\nregion = "us-east-1"\n'
        f'endpoint_url = "{moto_server.endpoint_url()}"\n'
        '[[tables]]\ntable = "orders"\nkey_schema = ["pk"]\n'
        '[[tables]]\ntable = "lines"\nkey_schema = ["order_id", "line"]\n'
        'create_indexes = false\nshard_key = { order_id = "hashed" }\n')

    done = run_replicator("prepare", "--migration-file", str(migration), "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # orders: its GSI, and (no shard key named) the default, hashed on the partition key
    assert ('db.getSiblingDB("app").getCollection("orders").createIndex({"customer": 1}, '
            '{"name": "byCustomer", "partialFilterExpression": {"customer": {"$exists": true}}})'
            ) in out, out
    assert 'db.adminCommand({"shardCollection": "app.orders", "key": {"pk": "hashed"}})' in out
    # lines: no index (create_indexes = false), sharded on the entry's key
    assert "bySku" not in out.replace("index(es) not made", ""), out
    assert ('db.adminCommand({"shardCollection": "app.lines", "key": {"order_id": "hashed"}})'
            ) in out, out
    assert "prepare of 2 table(s)" in done.stderr and "exit 0 (orders 0, lines 0)" in done.stderr
