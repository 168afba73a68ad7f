"""The migration file (replicator/migration_file.py): the documented example as it is shipped,
and every way a file can be wrong, each answered with the file, the table entry and the field
path (issue 22, part 2)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from replicator.cli.endpoints import settings_of
from replicator.migration_file import MigrationFileError, UriSource, load, parse
from replicator.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "whole-application" / "migration.toml"


def test_the_documented_example_names_two_tables_with_their_targets_and_settings() -> None:
    migration = load(EXAMPLE)
    orders, lines = migration.tables
    assert migration.defaults.uri_source == UriSource("env", "MONGODB_URI")
    assert migration.defaults.region == "eu-west-1"
    assert (orders.table, orders.namespace, orders.key_schema) == ("orders", "shop.orders", ("pk",))
    assert (lines.table, lines.namespace, lines.key_schema) == (
        "order_lines", "shop.order_lines", ("order_id", "line"))
    assert orders.create_indexes and lines.create_indexes
    assert orders.shard_key is None
    assert lines.shard_key == (("order_id", "hashed"),)
    assert orders.settings() == Settings(
        key_schema=("pk",), ttl_deletes="archive", archive_collection="orders_expired",
        bad_records="quarantine", tombstone_retention_s=172800)
    assert lines.settings() == Settings(
        key_schema=("order_id", "line"), shard_key=("order_id",), bad_records="quarantine",
        tombstone_retention_s=172800)
    # the docs show the same file
    docs = (ROOT / "docs" / "migration.md").read_text()
    text = EXAMPLE.read_text()
    assert text[text.index("[defaults]"):].strip() in docs


def _file(**changes: Any) -> dict[str, Any]:
    """Two valid tables; ``changes`` set keys of ``defaults``, ``t0``, ``t1`` (None removes)."""
    data: dict[str, Any] = {
        "defaults": {"database": "app", "mongodb_uri_env": "APP_URI"},
        "tables": [{"table": "a", "key_schema": ["pk"]},
                   {"table": "b", "namespace": "other.b_docs", "key_schema": ["pk", "sk"]}],
    }
    for where, values in changes.items():
        target = data["defaults"] if where == "defaults" else data["tables"][int(where[1])]
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return data


@pytest.mark.parametrize(("changes", "message"), [
    ({"t1": {"shardkey": ["pk"]}},
     "f.toml: tables[1] (b): unknown key 'shardkey' (known: "),
    ({"t0": {"ttl_deletes": "purge"}},
     "f.toml: tables[0] (a): ttl_deletes: ttl_deletes must be one of delete, ignore, archive"),
    ({"t1": {"shard_key": {"pk": "range"}}},
     "f.toml: tables[1] (b): shard_key.pk: 1 (ranged) or \"hashed\""),
    ({"t1": {"shard_key": {"pk": "hashed", "sk": "hashed"}}},
     "tables[1] (b): shard_key: at most one hashed field"),
    ({"t1": {"shard_key": [""]}}, "tables[1] (b): shard_key[0]: a field name"),
    ({"t1": {"shard_key": {"": 1}}}, "tables[1] (b): shard_key: '' is not a field name"),
    ({"t1": {"shard_key": {"pk": 1.0}}}, "tables[1] (b): shard_key.pk: 1 (ranged) or"),
    ({"t1": {"shard_key": {"pk": True}}}, "tables[1] (b): shard_key.pk: 1 (ranged) or"),
    ({"t1": {"shard_key": {"$pk": 1}}}, "tables[1] (b): shard_key.$pk: not a field path"),
    ({"t0": {"key_schema": ["pk", "pk"]}}, "tables[0] (a): key_schema: one or two different"),
    ({"t0": {"key_schema": []}}, "tables[0] (a): key_schema: one or two different"),
    ({"t1": {"namespace": "app.a_checkpoints"}},
     "tables[1] (b): namespace app.a_checkpoints is where the replicator keeps the checkpoints, "
     "progress or deletes of tables[0] (a)"),
    ({"t1": {"namespace": "app.a_sync"}}, "namespace app.a_sync is where the replicator keeps"),
    ({"t1": {"namespace": ".b"}}, "tables[1] (b): namespace: database.collection"),
    ({"t1": {"namespace": "app."}}, "tables[1] (b): namespace: database.collection"),
    ({"t0": {"id_mapping": ""}}, "tables[0] (a): id_mapping: a non-empty string"),
    ({"t0": {"transforms": ["ok:fn", 3]}}, "tables[0] (a): transforms: a list of names"),
    ({"t0": {"settings": {"guard": False}}}, "tables[0] (a): unknown key 'settings'"),
    ({"t0": {"key_schema": ["a", "b", "c"]}}, "tables[0] (a): key_schema: one or two"),
    ({"t0": {"transforms": "x.y:z", "guard": "yes"}}, "tables[0] (a): guard: true or false"),
    ({"t0": {"tombstone_retention_s": "2d"}}, "tables[0] (a): tombstone_retention_s: a whole"),
    ({"t0": {"tombstone_retention_s": 60}},
     "tables[0] (a): tombstone_retention_s: tombstone_retention_s must cover"),
    ({"t0": {"deadline_margin_s": True}}, "tables[0] (a): deadline_margin_s: a number"),
    ({"t0": {"create_indexes": "yes"}}, "tables[0] (a): create_indexes: true or false"),
    ({"t0": {"source_table": "x"}}, "tables[0] (a): source_table: set by the file itself"),
    ({"t1": {"namespace": "nodot"}}, "tables[1] (b): namespace: database.collection"),
    ({"t1": {"namespace": "my db.b"}}, "tables[1] (b): namespace: 'my db' is not a MongoDB "
                                       "database name"),
    ({"t1": {"namespace": "app.system.x"}}, "tables[1] (b): namespace: 'system.x' is not"),
    ({"t1": {"namespace": "app.a"}},
     "tables[1] (b): namespace app.a is already the target of tables[0] (a)"),
    ({"t1": {"table": "a", "namespace": "app.a2"}},
     "tables[1] (a): table 'a' is already listed as tables[0] (a)"),
    ({"t1": {"table": None}}, "f.toml: tables[1]: table: missing"),
    ({"t1": {"table": 7}}, "f.toml: tables[1]: table: a non-empty string"),
    ({"defaults": {"database": None}}, "tables[0] (a): namespace: missing (database.collection)"),
    ({"defaults": {"mongodb_uri": "mongodb://u:secretpw@h/db"}},
     "f.toml: [defaults]: mongodb_uri: a migration file holds no URI"),
    ({"defaults": {"mongodb_uri_parameter": "/p"}},
     "[defaults]: name one source of the MongoDB URI, not mongodb_uri_env and "
     "mongodb_uri_parameter"),
    ({"defaults": {"key_schema": ["pk"]}}, "[defaults]: key_schema belongs to each table's entry"),
    ({"defaults": {"shard_key": ["pk"]}}, "[defaults]: shard_key belongs to each table's entry"),
    ({"defaults": {"regoin": "x"}}, "f.toml: [defaults]: unknown key 'regoin'"),
    ({"defaults": {"numbers": "decimal"}}, "[defaults]: numbers: numbers must be one of"),
])
def test_a_wrong_key_or_value_names_the_file_the_entry_and_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(MigrationFileError) as raised:
        parse(_file(**changes), "f.toml")
    assert message in str(raised.value)
    assert "secretpw" not in str(raised.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"tables": []}, "f.toml: name at least one table"),
    ({}, "f.toml: name at least one table"),
    ({"table": [{"table": "a"}]}, "f.toml: unknown key 'table' at the top level"),
    ({"defaults": 3, "tables": [{"table": "a"}]}, "f.toml: defaults must be a table"),
    ({"tables": [3]}, "f.toml: tables[0]: each entry is a table"),
])
def test_a_file_without_its_shape_is_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(MigrationFileError) as raised:
        parse(data, "f.toml")
    assert message in str(raised.value)


def test_a_file_that_is_not_toml_or_not_there_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[tables]]\ntable = \n")
    with pytest.raises(MigrationFileError, match=r"broken.toml: not valid TOML \(.*line 2"):
        load(broken)
    with pytest.raises(MigrationFileError, match=r"missing\.toml: cannot read the migration file"):
        load(tmp_path / "missing.toml")


def test_shard_key_forms_and_defaults() -> None:
    migration = parse(_file(t0={"shard_key": ["pk", "placed"]},
                            t1={"shard_key": {"pk": 1, "sk": "hashed"}},
                            defaults={"create_indexes": False}), "f.toml")
    a, b = migration.tables
    assert a.shard_key == (("pk", 1), ("placed", 1)) and a.settings().shard_key == ("pk", "placed")
    assert b.shard_key == (("pk", 1), ("sk", "hashed"))
    assert (a.database, a.collection) == ("app", "a")  # [defaults] database, the table's name
    assert (b.database, b.collection) == ("other", "b_docs")
    assert not a.create_indexes and not b.create_indexes
    assert parse(_file(t1={"create_indexes": True}), "f.toml").tables[1].create_indexes


def test_settings_come_from_the_environment_then_defaults_then_the_table() -> None:
    migration = parse(_file(defaults={"bad_records": "fail", "numbers": "float"},
                            t0={"numbers": "lossless", "transforms": "pkg.mod:fn"}), "f.toml")
    a, b = migration.tables
    environ = {"REPLICATOR_BAD_RECORDS": "quarantine", "REPLICATOR_GUARD": "false",
               "REPLICATOR_NUMBERS": "float"}

    def settings(entry: Any) -> Settings:
        args = argparse.Namespace(key_schema=entry.key_schema,
                                  table_settings=dict(entry.settings_values))
        result: Settings = settings_of(args, environ)
        return result

    assert settings(a) == Settings(key_schema=("pk",), bad_records="fail", guard=False,
                                   numbers="lossless", transforms=("pkg.mod:fn",))
    assert settings(b) == Settings(key_schema=("pk", "sk"), bad_records="fail", guard=False,
                                   numbers="float")


def test_only_picks_tables_and_names_an_unknown_one() -> None:
    migration = parse(_file(), "f.toml")
    assert [t.table for t in migration.select(["b"])] == ["b"]
    assert [t.table for t in migration.select(None)] == ["a", "b"]
    with pytest.raises(MigrationFileError, match=r"--only c: no such table in the file \(its "
                                                 r"tables: a, b\)"):
        migration.select(["c"])
