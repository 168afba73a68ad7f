"""MongoDB topologies in Docker, the parts that need no Docker: commands, configs, waits, checks.

The container targets (testcontainers_target.py) put these together; keeping them here lets the
unit tests check every command and document without a Docker engine. Sources: MongoDB manual
("Deploy a Self-Managed Sharded Cluster", ``replSetInitiate``, ``addShard``, ``shardCollection``)
and testcontainers-java's ``MongoDBContainer`` (replica set: ``--replSet`` + initiate + wait for
primary; sharding: config server replica set, shard replica set, mongos, ``addShard``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from harness.backends.base import BackendUnavailable
from replicator.redact import redact_uri

#: current MongoDB release line; every target takes ``image=`` to choose another
DEFAULT_IMAGE = "mongo:8.0"
PORT = 27017
#: what mongod and mongos log once they listen (JSON logs since 4.4: "Waiting for connections")
READY_LOG = re.compile(r"waiting for connections", re.IGNORECASE)
CONFIG_REPLICA_SET = "cfg"
ShardKeyKind = Literal["hashed", "range"]
T = TypeVar("T")

NO_DOCKER_PREFIX = "no Docker engine answered"


# -- Docker --------------------------------------------------------------------------------------
def docker_engine_error() -> str | None:
    """None when a Docker engine answers ``docker.from_env().ping()``; else why not (one line).

    ``which docker`` is no test (the client may be installed without an engine), and constructing
    a testcontainers container already raises without one, so this asks the engine itself.
    """
    try:
        import docker
    except ImportError:
        return "the docker Python package is not installed"
    try:
        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:  # DockerException, requests' errors, PermissionError, ...
        return _one_line(f"{type(error).__name__}: {error}")
    return None


def require_docker(target: str) -> None:
    """Raise BackendUnavailable with one clear message when no Docker engine answers."""
    reason = docker_engine_error()
    if reason is not None:
        raise BackendUnavailable(no_docker_message(target, reason))


def no_docker_message(target: str, reason: str) -> str:
    return f"{NO_DOCKER_PREFIX}: {reason}; install/start Docker to use target {target!r}"


def docker_skip_reason() -> str | None:
    """The skip reason of the ``docker`` tests, or None when Docker answers."""
    reason = docker_engine_error()
    if reason is None:
        return None
    return (f"{NO_DOCKER_PREFIX} (docker.from_env().ping() failed): these tests need Docker "
            f"[{reason}]")


def _one_line(text: str, limit: int = 300) -> str:
    # redact_uri masks any scheme's userinfo (DOCKER_HOST may be tcp://user:password@host).
    text = redact_uri(text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- commands and documents ----------------------------------------------------------------------
def mongod_command(
    replica_set: str | None = None, role: Literal["configsvr", "shardsvr"] | None = None
) -> list[str]:
    """``mongod`` on port 27017 on every interface (the image's entrypoint passes it through).

    ``--configsvr`` and ``--shardsvr`` would move the default port to 27019 / 27018; every member
    here listens on 27017 so that ``alias:27017`` is its address on the Docker network.
    """
    command = ["mongod", "--port", str(PORT), "--bind_ip_all"]
    if role is not None:
        command.append(f"--{role}")
    if replica_set is not None:
        command += ["--replSet", replica_set]
    return command


def mongos_command(config_replica_set: str, config_hosts: Sequence[str]) -> list[str]:
    return [
        "mongos", "--port", str(PORT), "--bind_ip_all",
        "--configdb", f"{config_replica_set}/{','.join(config_hosts)}",
    ]


def replica_set_config(
    name: str, hosts: Sequence[str], *, configsvr: bool = False
) -> dict[str, Any]:
    """The ``replSetInitiate`` document: members ``_id`` 0..n-1 at ``hosts``."""
    config: dict[str, Any] = {"_id": name}
    if configsvr:
        config["configsvr"] = True
    config["members"] = [{"_id": index, "host": host} for index, host in enumerate(hosts)]
    return config


def shard_key_spec(fields: Sequence[str], kind: ShardKeyKind = "hashed") -> dict[str, Any]:
    """``shardCollection``'s key: ``{f: "hashed"}`` (first field hashed, any others ascending;
    MongoDB allows one hashed field) or ``{f: 1, ...}`` for a ranged key."""
    if not fields:
        raise ValueError("a shard key needs at least one field")
    if kind not in ("hashed", "range"):
        raise ValueError(f"shard_key_kind must be 'hashed' or 'range', got {kind!r}")
    spec: dict[str, Any] = {}
    for position, name in enumerate(fields):
        spec[name] = "hashed" if kind == "hashed" and position == 0 else 1
    return spec


def shard_names(count: int) -> list[str]:
    """Replica set name = shard name = network alias of each shard: shard1, shard2, ..."""
    return [f"shard{index}" for index in range(1, count + 1)]


def chunk_moves(
    split_points: Sequence[Mapping[str, Any]], shards: Sequence[str]
) -> list[tuple[dict[str, Any], str]]:
    """For a ranged key: split at each point and move the chunk starting there to the next shard
    in turn (the first chunk stays on ``shards[0]``, which the caller makes the database's primary
    shard: see ShardedContainerTarget._enable_sharding)."""
    return [(dict(point), shards[(index + 1) % len(shards)])
            for index, point in enumerate(split_points)]


def is_writable_primary(hello: Mapping[str, Any]) -> bool:
    return bool(hello.get("isWritablePrimary", hello.get("ismaster", False)))


# -- waiting -------------------------------------------------------------------------------------
def wait_until(
    check: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` until it returns a truthy value (exceptions count as "not yet").

    Raises TimeoutError naming ``what`` and the last error (credentials redacted).
    """
    deadline = clock() + timeout_s
    last = "no answer yet"
    while True:
        try:
            value = check()
            if value:
                return value
            last = f"not yet ({value!r})"
        except Exception as error:
            last = _one_line(f"{type(error).__name__}: {error}")
        if clock() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s; last: {last}")
        sleep(interval_s)


def initiate_replica_set(client: Any, config: Mapping[str, Any], *, timeout_s: float) -> None:
    """``replSetInitiate`` through a direct connection, then wait until the member is PRIMARY."""
    from pymongo.errors import OperationFailure

    try:
        client.admin.command("replSetInitiate", dict(config))
    except OperationFailure as error:
        if error.code != 23:  # AlreadyInitialized: a retried start() is fine
            raise
    wait_until(
        lambda: is_writable_primary(client.admin.command("hello")),
        timeout_s=timeout_s,
        what=f"replica set {config['_id']!r} to elect a primary",
    )
