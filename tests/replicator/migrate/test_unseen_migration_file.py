"""Issue 22 parts 2 and 3 against inputs their own tests did not use (a fresh reviewer's break
pass): migration files whose entries collide in ways MongoDB or the replicator's side
collections cannot take, settings valid alone but not together, table names no collection can
have; and ``prepare`` with attribute names of every kind, merge mode's own field, a GSI deleted
since the last run, and one table of a file in conflict while the next goes on."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from pymongo import MongoClient

from replicator.cli.endpoints import settings_of
from replicator.migrate.target import plan_target, prepare
from replicator.migration_file import MigrationFileError, load, parse
from replicator.settings import Settings
from support.replicator_command import run_replicator


def _tables(*entries: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    return {"defaults": {"database": "app", **defaults}, "tables": list(entries)}


# -- the file ------------------------------------------------------------------------------------
def test_settings_of_the_new_modes_reach_the_tables_settings() -> None:
    migration = parse(_tables({"table": "orders", "write_mode": "merge"},
                              {"table": "events", "source": "kinesis",
                               "stream_retention_s": 31536000}, write_mode="replace"))
    orders, events = migration.tables
    assert orders.settings().write_mode == "merge"
    assert (events.settings().source, events.settings().write_mode) == ("kinesis", "replace")
    # a year-long stream: the tombstones' default follows it (a plain replace over the
    # environment's settings kept the 24-hour stream's 48 hours, and every command refused it)
    assert events.settings().tombstone_retention_s == 31536000 + 86400
    args = argparse.Namespace(table_settings=dict(events.settings_values), key_schema=None)
    assert settings_of(args, {}).tombstone_retention_s == 31536000 + 86400
    explicit = settings_of(args, {"REPLICATOR_TOMBSTONE_RETENTION_S": "40000000"})
    assert explicit.tombstone_retention_s == 40000000


@pytest.mark.parametrize("data, message", [
    (_tables({"table": "a", "write_mode": "upsert"}),
     "f.toml: tables[0] (a): write_mode: write_mode must be one of replace, merge"),
    (_tables({"table": "a"}, source="sqs"),
     "f.toml: [defaults]: source: source must be one of"),
    (_tables({"table": "a", "source": ["kinesis"]}), "f.toml: tables[0] (a): source: "),
    # each value alone is fine; the entry's tombstones would not outlive [defaults]' stream
    (_tables({"table": "a", "tombstone_retention_s": 90000}, stream_retention_s=31536000),
     "f.toml: tables[0] (a): tombstone_retention_s (90000) must cover the stream's retention"),
    # a DynamoDB table may be named so; a collection may not
    (_tables({"table": "system.users"}), "f.toml: tables[0] (system.users): table (the default "
                                         "collection name): 'system.users' is not a MongoDB"),
    # MongoDB refuses a second database differing only in case (DatabaseDifferCase)
    ({"tables": [{"table": "a", "namespace": "Shop.a"}, {"table": "b", "namespace": "shop.b"}]},
     "f.toml: tables[1] (b): database 'shop' differs from 'Shop' of tables[0] (a) only in case"),
    # one table's tombstones (or archive) in another table's collection
    (_tables({"table": "a", "tombstone_collection": "b"}, {"table": "b"}),
     "f.toml: tables[1] (b): namespace app.b is where the replicator keeps"),
    (_tables({"table": "a", "ttl_deletes": "archive", "archive_collection": "b"}, {"table": "b"}),
     "f.toml: tables[1] (b): namespace app.b is where the replicator keeps"),
    # two tables sharing one tombstone collection: deletes are keyed by _id alone, so a delete
    # of item "x" of one table would keep item "x" of the other from being written
    (_tables({"table": "a"}, {"table": "b"}, tombstone_collection="deletes"),
     "f.toml: tables[1] (b): app.deletes is also where the replicator keeps"),
    (_tables({"table": "a", "quarantine_collection": "bad"},
             {"table": "b", "quarantine_collection": "bad"}),
     "f.toml: tables[1] (b): app.bad is also where the replicator keeps"),
    (_tables(), "f.toml: name at least one table"),
])
def test_a_file_mongodb_or_the_replicator_cannot_take_is_refused_naming_the_entry(
        data: dict[str, Any], message: str) -> None:
    with pytest.raises(MigrationFileError) as raised:
        parse(data, "f.toml")
    assert message in str(raised.value)


def test_names_mongodb_takes_are_taken() -> None:
    # collections differ by case (only databases may not); names DynamoDB allows with dots
    migration = parse({"tables": [{"table": "Orders", "namespace": "shop.Orders"},
                                  {"table": "orders", "namespace": "shop.orders"},
                                  {"table": "v1.items", "namespace": "shop.v1.items"}]})
    assert [t.namespace for t in migration.tables] == ["shop.Orders", "shop.orders",
                                                       "shop.v1.items"]


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path: Any) -> None:
    path = tmp_path / "app.toml"
    path.write_text('[defaults]\ndatabase = "app"\n\n[[tables]]\ntable = "a"\n'
                    "write_mode = merge\n")
    with pytest.raises(MigrationFileError, match=r"app\.toml: not valid TOML .*line 6"):
        load(path)


# -- prepare ---------------------------------------------------------------------------------------
def _table(*gsis: tuple[str, str], types: dict[str, str] | None = None) -> dict[str, Any]:
    return {"TableName": "t", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}] + [
                {"AttributeName": k, "AttributeType": v} for k, v in (types or {}).items()],
            "GlobalSecondaryIndexes": [
                {"IndexName": name, "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": attribute, "KeyType": "HASH"}]}
                for name, attribute in gsis]}


def test_binary_number_spaced_and_unicode_attributes_are_indexed(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    types = {"blob": "B", "n": "N", "first name": "S", "名前": "S"}
    plan = plan_target(_table(("byBlob", "blob"), ("byN", "n"), ("bySpace", "first name"),
                              ("byName", "名前"), types=types))
    prepare(collection, plan)
    listed = {i["name"]: dict(i["key"]) for i in collection.list_indexes()}
    assert listed == {"_id_": {"_id": 1}, "byBlob": {"blob": 1}, "byN": {"n": 1},
                      "bySpace": {"first name": 1}, "byName": {"名前": 1}}
    collection.insert_many([{"_id": 1, "名前": "x"}, {"_id": 2}])
    assert [d["_id"] for d in collection.find({"名前": "x"}).hint("byName")] == [1]


def test_merge_modes_field_list_is_never_an_attributes_index() -> None:
    table = _table(("byFields", "_ddb_fields"))
    merged = plan_target(table, settings=Settings(write_mode="merge"))
    assert merged.indexes == () and "merge mode's list" in merged.skipped[0].reason
    # in replace mode it is an ordinary attribute
    assert [i.name for i in plan_target(table).indexes] == ["byFields"]


def test_an_index_of_a_gsi_deleted_since_is_reported_not_dropped(mongoeco_db: Any) -> None:
    collection = mongoeco_db["items"]
    prepare(collection, plan_target(_table(("byA", "a"), ("byB", "b"))))
    collection.create_index("mine", name="mine")
    again = prepare(collection, plan_target(_table(("byA", "a"))))  # byB deleted in DynamoDB
    assert again.commands == []
    stale = [n for n in again.notes if "comes from no GSI or LSI" in n]
    assert len(stale) == 2 and "'byB'" in stale[0] and "'mine'" in stale[1]
    assert 'dropIndex("byB")' in stale[0]
    assert {i["name"] for i in collection.list_indexes()} == {"_id_", "byA", "byB", "mine"}


@pytest.mark.slow
def test_one_tables_conflict_stops_that_table_and_the_next_is_prepared(
        moto_server: Any, mongoeco_server_uri: str, tmp_path: Any) -> None:
    client = moto_server.dynamodb()
    for name in ("first", "second"):
        client.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "email", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "byEmail", "Projection": {
                "ProjectionType": "ALL"}, "KeySchema": [{"AttributeName": "email",
                                                         "KeyType": "HASH"}]}])
    uri = f"{mongoeco_server_uri}?directConnection=true"
    database = f"conflict{tmp_path.name[-8:]}".replace("-", "_")
    with MongoClient(uri) as mongo:
        mongo.drop_database(database)
        mongo[database]["first"].create_index("email", name="byEmail", unique=True)
        path = tmp_path / "app.toml"
        path.write_text(f'[defaults]\ndatabase = "{database}"\nregion = "us-east-1"\n'
                        f'endpoint_url = "{moto_server.endpoint_url()}"\n'
                        '[[tables]]\ntable = "first"\nkey_schema = ["pk"]\n'
                        '[[tables]]\ntable = "second"\nkey_schema = ["pk"]\n')
        done = run_replicator("prepare", "--migration-file", str(path), "--mongodb-uri", uri)
        assert done.returncode == 2, done.stderr
        assert "index 'byEmail'" in done.stderr and "dropIndex" in done.stderr
        assert "exit 2 (first 2, second 0)" in done.stderr
        assert {i["name"] for i in mongo[database]["second"].list_indexes()} == {
            "_id_", "byEmail"}
        mongo.drop_database(database)


# -- merge mode: verify and recover over a field list another application broke --------------------
def test_recover_repairs_a_document_whose_field_list_another_application_broke(
        moto: Any, target: Any) -> None:
    from harness.backends.base import TableSpec
    from harness.migration import make_poller, prefill
    from replicator.migrate.gap import recover
    from replicator.migrate.sync import sync_scan
    from replicator.migrate.verify import Verifier
    from replicator.settings import FIELDS_FIELD

    merge = Settings(key_schema=("pk",), write_mode="merge")
    table = moto.create_table(TableSpec("merged", ("pk", "S")))
    prefill(moto.dynamodb(), "merged", 3)
    collection = target.collection("m", "merged")
    poller = make_poller(moto, table, collection, settings=merge)
    sync_scan(poller, segments=1, page_size=10)
    past = ("9" * 30).zfill(40)  # past the stream: only the re-copy can repair it
    collection.update_one({"_id": "item-000001"},
                          {"$set": {FIELDS_FIELD: "broken", "app": 1, "v": 99, "_ddb_seq": past}})

    def verify() -> Any:
        return Verifier(moto.dynamodb(), "merged", collection, merge, segments=1, page_size=10,
                        wait_for_replication=lambda: poller.run(once=True)).run()

    assert {d.document_id for d in verify().divergences} == {"item-000001"}
    # the re-copy writes through the merge pipeline, which MongoDB refused for a non-array list
    # (every re-copy of the item quarantined) before it checked $isArray
    report = recover(poller, segments=1, page_size=10)
    assert report.copy is not None and report.copy.items_written == 1
    document = collection.find_one({"_id": "item-000001"})
    assert document is not None and document["v"] == 0 and document["app"] == 1
    assert isinstance(document[FIELDS_FIELD], list)
    assert verify().ok


@pytest.mark.slow
def test_sync_of_a_kinesis_fed_file_copies_and_one_tables_conflict_spares_the_next(
        moto_server: Any, mongoeco_server_uri: str, tmp_path: Any) -> None:
    # source = "kinesis" in [defaults]: the copy used to be quarantined item by item (a scan's
    # records are DynamoDB-shaped); and the first table's prepare conflict stops it alone
    client = moto_server.dynamodb()
    for name in ("first", "second"):
        client.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "email", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "byEmail", "Projection": {
                "ProjectionType": "ALL"}, "KeySchema": [{"AttributeName": "email",
                                                         "KeyType": "HASH"}]}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        client.put_item(TableName=name, Item={"pk": {"S": "a"}, "email": {"S": "x@y"}})
    uri = f"{mongoeco_server_uri}?directConnection=true"
    database = f"sync{tmp_path.name[-8:]}".replace("-", "_")
    with MongoClient(uri) as mongo:
        mongo.drop_database(database)
        mongo[database]["first"].create_index("email", name="byEmail", unique=True)
        path = tmp_path / "app.toml"
        header = (f'[defaults]\ndatabase = "{database}"\nregion = "us-east-1"\n'
                  f'endpoint_url = "{moto_server.endpoint_url()}"\nsource = "kinesis"\n')
        # without the data streams' ARNs the tables' DynamoDB streams would be followed after
        # the copy (every record quarantined as the other source): refused before the copy,
        # naming the fix (kinesis sync: tests/replicator/migrate/test_kinesis_sync.py)
        path.write_text(header + '[[tables]]\ntable = "first"\nkey_schema = ["pk"]\n'
                        '[[tables]]\ntable = "second"\nkey_schema = ["pk"]\n')
        refused = run_replicator("sync", "--migration-file", str(path), "--mongodb-uri", uri,
                                 "--segments", "1", "--no-progress")
        assert "exit 2 (first 2, second 2)" in refused.stderr, refused.stderr
        assert "--kinesis-stream arn:aws:kinesis" in refused.stderr
        assert mongo[database]["second"].count_documents({}) == 0
        kinesis = moto_server.kinesis()
        arns = {}
        for name in ("first", "second"):
            kinesis.create_stream(StreamName=f"{name}-kds", ShardCount=1)
            arns[name] = kinesis.describe_stream_summary(
                StreamName=f"{name}-kds")["StreamDescriptionSummary"]["StreamARN"]
        path.write_text(header + '[[tables]]\ntable = "first"\nkey_schema = ["pk"]\n'
                        f'kinesis_stream = "{arns["first"]}"\n'
                        '[[tables]]\ntable = "second"\nkey_schema = ["pk"]\n'
                        f'kinesis_stream = "{arns["second"]}"\n')
        done = run_replicator("sync", "--migration-file", str(path), "--mongodb-uri", uri,
                              "--segments", "1", "--no-progress")
        assert done.returncode == 2, done.stderr
        assert "exit 2 (first 2, second 0)" in done.stderr
        assert mongo[database]["first"].count_documents({}) == 0  # stopped before its copy
        assert [d["email"] for d in mongo[database]["second"].find()] == ["x@y"]
        assert mongo[database]["second_quarantine"].count_documents({}) == 0
        mongo.drop_database(database)
