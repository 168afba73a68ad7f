"""``--migration-file`` on the command line (replicator/cli/tables.py): usage errors before
anything connects, each table's own exit code and counts on its line, the highest code as the
process's, a failing table that does not stop the others, the repair command naming the file, and
one ``/healthz`` over every table (issue 22, part 2).

``cli.main`` runs in this process against moto in-process (every boto3 client the command makes
is moto's) and mongoeco's wire server through the real pymongo client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import TableSpec
from harness.backends.moto_source import StreamRetention
from replicator import cli
from replicator.cli import commands
from replicator.poller.metrics import TablesMetrics


@pytest.fixture
def quiet_cli(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> None:
    """cli.main() configures logging as a process does (undone: ``restore_logging``) and installs
    signal handlers: neither outlives the test."""
    monkeypatch.setattr(commands, "install_signal_handlers", lambda stop: None)


def exit_code(argv: list[str]) -> int:
    """cli.main's exit code; argparse's own usage errors exit the process (SystemExit)."""
    try:
        return cli.main(argv)
    except SystemExit as exited:
        return int(exited.code or 0)


def write_file(path: Path, *tables: str, defaults: str = "",
               extra: dict[str, str] | None = None) -> Path:
    """``path`` naming ``tables`` (database: the file's stem); ``extra``: TOML lines of a table's
    entry."""
    entries = "\n".join(f'[[tables]]\ntable = "{t}"\n{(extra or {}).get(t, "")}\n'
                         for t in tables)
    path.write_text(f'[defaults]\ndatabase = "{path.stem}"\nregion = "us-east-1"\n{defaults}\n'
                    f"{entries}")
    return path


# -- usage: exit 2 before anything connects --------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["sync", "--migration-file", "{f}", "--database", "x"],
     "--database: the migration file names each table's target and key schema"),
    (["run", "--migration-file", "{f}", "--table", "a", "--key-schema", "pk"],
     "--table, --key-schema: the migration file names"),
    (["verify", "--only", "a", "--table", "a"], "--only picks tables of a --migration-file"),
    (["verify"], "the following arguments are required: --table (or --migration-file"),
    (["sync", "--migration-file", "{f}", "--export", "s3://b/p/AWSDynamoDB/1"],
     "--export belongs to one table: add --only TABLE (2 tables selected from"),
    (["recover", "--migration-file", "{f}", "--only", "c"],
     "--only c: no such table in the file (its tables: a, b)"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path, quiet_cli: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_file(tmp_path / "app.toml", "a", "b")
    code = exit_code([part.replace("{f}", str(path)) for part in argv])
    assert code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_a_wrong_file_names_the_entry_and_the_field(tmp_path: Path, quiet_cli: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "app.toml"
    path.write_text('[defaults]\ndatabase = "app"\n[[tables]]\ntable = "a"\n'
                    '[[tables]]\ntable = "b"\nttl_deletes = "purge"\n')
    assert cli.main(["verify", "--migration-file", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}: tables[1] (b): ttl_deletes: ttl_deletes must be one of" in err


def test_the_other_commands_take_no_migration_file(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["resync", "--migration-file", str(tmp_path / "f.toml"), "--yes"]
                     ) == cli.EXIT_USAGE
    assert "unrecognized arguments: --migration-file" in capsys.readouterr().err


# -- many tables, one run ----------------------------------------------------------------------------
def _fill(moto: Any, table: str, count: int, start: int = 0) -> None:
    client = moto.dynamodb()
    for n in range(start, start + count):
        client.put_item(TableName=table, Item={"pk": {"S": f"{table}-{n:03d}"},
                                               "n": {"N": str(n)}})


@pytest.mark.slow
def test_each_table_has_its_line_and_the_run_the_highest_code(
    moto: Any, mongoeco_server_uri: str, tmp_path: Path, quiet_cli: None,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``users`` exists, ``ghost`` does not: ``run --once`` applies users and exits 4 (could
    not run) naming ghost; a trimmed stream on ``items`` is exit 3 with the repair command for
    that table of the file, which repairs it; verify of the file then exits 0."""
    from pymongo import MongoClient

    for table in ("users", "items"):
        moto.create_table(TableSpec(table, ("pk", "S")))
        _fill(moto, table, 12)
    uri = f"{mongoeco_server_uri}ignored?directConnection=true"
    monkeypatch.setenv("APP_URI", uri)
    monkeypatch.delenv("MONGODB_URI", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")  # moto's mock answers any
    source = 'mongodb_uri_env = "APP_URI"\n'
    # each table's own settings: users' documents go through the example transform
    transform = {"users": 'transforms = ["replicator.transforms.example"]'}
    both = write_file(tmp_path / "manyrun.toml", "users", "ghost", "items", defaults=source,
                      extra=transform)

    code = cli.main(["run", "--migration-file", str(both), "--once", "--poll-interval", "0.01"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_UNAVAILABLE, err
    assert ("table users -> manyrun.users: exit 0 (done); records applied: 12; checkpoints "
            "saved: 1; stopped by: stream drained (--once)") in err
    assert "table ghost -> manyrun.ghost: exit 4 (could not run)" in err
    assert "table items -> manyrun.items: exit 0 (done); records applied: 12" in err
    assert "table ghost: could not run: " in err
    assert f"run of 3 table(s) from {both}: exit 4 (users 0, ghost 4, items 0)" in err
    client: Any
    with MongoClient(uri) as client:
        assert client["manyrun"]["users"].count_documents({}) == 12
        assert client["manyrun"]["items"].count_documents({}) == 12
        assert client["manyrun"]["users"].count_documents({"age": 0}) == 12
        assert client["manyrun"]["items"].count_documents({"age": {"$exists": True}}) == 0
        # each table its own checkpoints
        assert client["manyrun"]["users_checkpoints"].count_documents({"kind": "shard"}) == 1
        assert client["manyrun"]["items_checkpoints"].count_documents({"kind": "shard"}) == 1

    # items' stream loses records past its checkpoint: exit 3 with the repair for that table
    two = write_file(tmp_path / "manyrun.toml", "users", "items", defaults=source,
                     extra=transform)
    with StreamRetention() as retention:
        _fill(moto, "items", 5, start=100)
        retention.trim("items")
        _fill(moto, "items", 2, start=200)
        _fill(moto, "users", 3, start=100)
        code = cli.main(["run", "--migration-file", str(two), "--once",
                         "--poll-interval", "0.01"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_RESYNC, err
        assert "table users -> manyrun.users: exit 0 (done); records applied: 3" in err
        assert "table items -> manyrun.items: exit 3 (re-sync required)" in err
        repair = f"replicator recover --migration-file {two} --only items --yes"
        assert repair in err
        code = cli.main(["recover", "--migration-file", str(two), "--only", "items", "--yes",
                         "--segments", "1"])
        err = capsys.readouterr().err
        assert code == cli.EXIT_OK, err
        assert "table items -> manyrun.items: exit 0 (done); method: re-copy" in err
        assert "table users" not in err
    code = cli.main(["verify", "--migration-file", str(two), "--segments", "1",
                     "--recheck-delay", "0", "--report", str(tmp_path / "v.json")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert "table users -> manyrun.users: exit 0 (done); items: 15; documents: 15" in err
    assert "table items -> manyrun.items: exit 0 (done); items: 19; documents: 19" in err
    assert json.loads((tmp_path / "v.users.json").read_text())["items"] == 15
    assert json.loads((tmp_path / "v.items.json").read_text())["items"] == 19


# -- one /healthz for every table ----------------------------------------------------------------------
def test_one_health_covers_every_table_and_names_the_stalled_and_the_stopped() -> None:
    now = [100.0]
    metrics = TablesMetrics(stall_after_s=30, clock=lambda: now[0], wall=lambda: 1.0)
    orders = metrics.table("orders", "orders")
    lines = metrics.table("order_lines", "lines")
    orders.polled(["shard-1"])
    lines.polled(["shard-9"])
    healthy, report = metrics.health()
    assert healthy and report["status"] == "ok"
    assert sorted(report["tables"]) == ["order_lines", "orders"]

    now[0] = 140.0
    orders.polled(["shard-1"])  # order_lines' shard has not advanced for 40 s
    healthy, report = metrics.health()
    assert not healthy and report["stalled_tables"] == ["order_lines"]
    assert report["tables"]["order_lines"]["stalled_shards"] == ["shard-9"]

    lines.polled(["shard-9"])
    metrics.stopped("orders", 3, "re-sync required: ...")
    healthy, report = metrics.health()
    assert not healthy and report["status"] == "stopped"
    assert report["stopped_tables"] == {"orders": {"exit_code": 3,
                                                   "error": "re-sync required: ..."}}
    assert report["stalled_tables"] == []

    with metrics.serve(0) as server:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{server.url}/healthz", timeout=30)
        assert answer.value.code == 503
        assert json.loads(answer.value.read())["stopped_tables"]["orders"]["exit_code"] == 3
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
            text = response.read().decode()
    # one family per figure, each table's series under its own labels
    assert text.count("# TYPE replicator_shard_last_advance_timestamp_seconds gauge") == 1
    assert 'collection="orders",shard="shard-1",table="orders"' in text
    assert 'collection="lines",shard="shard-9",table="order_lines"' in text


@pytest.mark.slow  # verify retries the unreachable MongoDB a few seconds per table
@pytest.mark.parametrize("kind", ["env", "secret_arn", "parameter"])
def test_the_uri_read_from_the_files_source_is_never_shown(
    kind: str, aws: None, tmp_path: Path, quiet_cli: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The file names where the URI is (a variable, a Secrets Manager secret, an SSM parameter);
    the URI there (with a password, on a closed port) is read -- each table then fails with
    exit 4, MongoDB unreachable -- and appears in no line."""
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"mongodb://app:Pa55w0rd-in-file@127.0.0.1:{port}/?serverSelectionTimeoutMS=200"
    monkeypatch.delenv("MONGODB_URI", raising=False)
    if kind == "env":
        monkeypatch.setenv("SHOP_URI", uri)
        name = "SHOP_URI"
    elif kind == "secret_arn":
        name = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="shop/uri", SecretString=f'{{"uri": "{uri}\\n"}}')["ARN"]
    else:
        name = "/shop/uri"
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=name, Value=uri, Type="SecureString")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for table in ("a", "b"):
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    path = write_file(tmp_path / "secret.toml", "a", "b",
                      defaults=f'mongodb_uri_{kind} = "{name}"')
    code = cli.main(["verify", "--migration-file", str(path), "--segments", "1"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_UNAVAILABLE, captured.err
    assert "table a -> secret.a: exit 4 (could not run)" in captured.err
    assert "table b -> secret.b: exit 4 (could not run)" in captured.err
    assert "MongoDB cannot be reached" in captured.err
    assert "Pa55w0rd-in-file" not in captured.err + captured.out


def test_a_uri_variable_nobody_set_is_a_usage_error(
    tmp_path: Path, quiet_cli: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SHOP_URI", raising=False)
    path = write_file(tmp_path / "secret.toml", "a", defaults='mongodb_uri_env = "SHOP_URI"')
    assert cli.main(["verify", "--migration-file", str(path)]) == cli.EXIT_USAGE
    assert (f"{path}: [defaults] mongodb_uri_env names the variable SHOP_URI, which is not set"
            in capsys.readouterr().err)
