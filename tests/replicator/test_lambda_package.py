"""The pure-Python Lambda package (docs/lambda-packaging.md): the replicator's sources without the
C accelerator, beside pymongo, bson and dnspython, and nothing else on ``sys.path``, handles an
event through ``replicator.handler.lambda_handler``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aws_lambda_powertools
import bson
import dns
import jmespath
import pymongo
import pytest
import typing_extensions

from support.lambda_isolated import handle_isolated

ROOT = Path(__file__).resolve().parents[2]


def package(into: Path) -> Path:
    """The function's package as docs/lambda-packaging.md's pure way builds it."""
    site = into / "package"
    shutil.copytree(ROOT / "replicator", site / "replicator",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    # Powertools (the `lambda` extra: the handler's metrics and JSON logs) and its requirements
    for module in (pymongo, bson, dns, aws_lambda_powertools, jmespath):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, site / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(typing_extensions.__file__ or "", site)
    gridfs = Path(pymongo.__file__ or "").parent.parent / "gridfs"
    if gridfs.is_dir():  # pymongo's own package imports it
        shutil.copytree(gridfs, site / "gridfs", ignore=shutil.ignore_patterns("__pycache__"))
    return site


@pytest.mark.slow
def test_the_pure_package_handles_an_event_with_only_pymongo_beside_it(
    tmp_path: Path, mongoeco_db: Any, stream_record: Any
) -> None:
    site = package(tmp_path)
    assert not list(site.glob("replicator/_speedups*.so"))
    host, port = mongoeco_db.client.address
    event = {"Records": [stream_record("100", "INSERT", {"id": {"S": "a"}},
                                       new={"id": {"S": "a"}, "n": {"N": "1"}})]}
    environment = {
        "MONGODB_URI": f"mongodb://{host}:{port}/",
        "MONGODB_DATABASE": mongoeco_db.name,
        "MONGODB_COLLECTION": "users",
        "PATH": "/usr/bin:/bin",
    }
    # -I: no PYTHONPATH, no user site; -S: no site-packages at all: the package and the stdlib
    handled = handle_isolated(site, event, environment, cwd=tmp_path)
    emf = [line for line in handled.stdout.splitlines() if '"_aws"' in line]
    assert len(emf) == 1 and json.loads(emf[0])["Applied"] == [1.0]  # the metrics work as packaged
    assert handled.response == {"batchItemFailures": []}
    assert handled.native is False and "not built" in handled.unavailable
    assert handled.documents == [{"_id": "a", "id": "a", "n": 1}]
    # nothing was imported from the checkout
    assert [f for f in handled.files if f.startswith(f"{ROOT}/")] == []
