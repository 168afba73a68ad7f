"""Rough edges a user hit with the ``harness`` command: ``list`` in plain text, an install without
the dev kit's extra, and ``harness up`` run as a user runs it (a process, its printed endpoints,
Ctrl-C)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import INSTALL_EXTRA, app
from harness.scenario import list_scenarios

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

#: A sitecustomize that makes the modules named in BLOCK_MODULES unimportable, as in an install
#: without the extra (``pip install ddb-mongo-replicator``).
BLOCKER = '''
import os, sys

BLOCKED = set(filter(None, os.environ.get("BLOCK_MODULES", "").split(",")))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''


# -- harness list ----------------------------------------------------------------------------------
def test_list_is_plain_text_with_whole_sentences() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    output = result.output
    assert "``" not in output and not re.search(r":[a-z]+:`", output)
    assert not set(output) & set("┏┃│└━"), "no table drawing: plain text"
    flat = " ".join(output.split())
    for path, scenario in list_scenarios():
        # the whole description, wrapped but never cut at its first line
        assert path.stem in flat
        assert " ".join(scenario.description.replace("``", "").split()) in flat
    # a docstring's first paragraph in full, its reST literals unwrapped
    assert "(fast; deviations in tests/fidelity/behaviours.json)." in flat
    assert "moto in-process: mock_aws is active between start() and stop()." in flat
    for heading in ("sources (--source)", "handlers (--handler", "scenarios (harness run NAME)"):
        assert heading in output


# -- an install without the extra ------------------------------------------------------------------
def _entry_point() -> tuple[str, str]:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["harness"].split(":")
    return module, function


def _harness_without(tmp_path: Path, blocked: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    module, function = _entry_point()
    script = f"import sys, {module} as m; sys.argv[0] = 'harness'; m.{function}()"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
           "BLOCK_MODULES": blocked, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.parametrize("blocked", ["typer,rich", "jsonschema,matplotlib,ddsketch"])
def test_without_the_extra_the_command_names_it_in_one_line(tmp_path: Path, blocked: str) -> None:
    done = _harness_without(tmp_path, blocked, "run", "smoke")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and INSTALL_EXTRA in lines[0], done.stderr
    assert re.search(r"no module named '(" + blocked.replace(",", "|") + ")'", lines[0])


@pytest.mark.slow
def test_without_the_emulators_a_command_names_the_extra(tmp_path: Path) -> None:
    # the command imports: moto is looked for only when `harness up` starts its server
    done = _harness_without(tmp_path, "moto,mongoeco", "up")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert INSTALL_EXTRA.removeprefix("pip install ") in done.stderr


# -- harness up ------------------------------------------------------------------------------------
def _port_open(url: str) -> bool:
    host, port = re.sub(r"^\w+://", "", url).split("/")[0].rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(2.0)
        return probe.connect_ex((host, int(port))) == 0


@pytest.fixture
def harness_up() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    pytest.importorskip("mongoeco", reason="harness up's MongoDB server (mongoeco) needs Python >= 3.13")
    process = subprocess.Popen(
        [sys.executable, "-c", "from harness.cli import main; main()", "up"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    exports: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the endpoints come first, then the line saying it runs
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = value
            if line.startswith("# running"):
                break
        else:
            pytest.fail(f"harness up ended before it ran: {process.wait(60)} {process.stderr.read()}")  # type: ignore[union-attr]
        yield process, exports
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(60)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_harness_up_serves_until_ctrl_c(harness_up: tuple[subprocess.Popen[str], dict[str, str]],
                                        stop: signal.Signals) -> None:
    import boto3
    from pymongo import MongoClient

    process, exports = harness_up
    assert set(exports) >= {"AWS_ENDPOINT_URL", "MONGODB_URI", "AWS_ACCESS_KEY_ID",
                            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    # the user's code, pointed at them with the printed values only
    dynamodb = boto3.client("dynamodb", endpoint_url=exports["AWS_ENDPOINT_URL"],
                            region_name=exports["AWS_DEFAULT_REGION"],
                            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
    dynamodb.create_table(TableName="orders", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          StreamSpecification={"StreamEnabled": True,
                                               "StreamViewType": "NEW_AND_OLD_IMAGES"})
    assert dynamodb.list_tables()["TableNames"] == ["orders"]
    client: MongoClient[dict[str, object]] = MongoClient(exports["MONGODB_URI"],
                                                         serverSelectionTimeoutMS=5000)
    try:
        client["app"]["orders"].insert_one({"_id": "o1", "total": 3})
        assert client["app"]["orders"].find_one({"_id": "o1"}) == {"_id": "o1", "total": 3}
    finally:
        client.close()

    process.send_signal(stop)
    assert process.wait(60) == 0, process.stderr.read()  # type: ignore[union-attr]
    assert "all stopped" in process.stderr.read()  # type: ignore[union-attr]
    assert not _port_open(exports["AWS_ENDPOINT_URL"])
    assert not _port_open(exports["MONGODB_URI"])
