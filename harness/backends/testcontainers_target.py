"""Real MongoDB in Docker (testcontainers): a standalone, a replica set, a sharded cluster.

``testcontainers-standalone``  one mongod with root auth (testcontainers' MongoDbContainer); no
                               transactions, so shard key moves take the single-write path.
``testcontainers-replset``     one mongod started with ``--replSet rs0``, initiated through the
                               driver with ``directConnection=true``; transactions work.
``testcontainers-sharded``     a config server replica set, ``shards`` shard replica sets and a
                               mongos on a private Docker network (each reachable by its alias);
                               every collection the harness asks for is sharded on ``shard_key``.

Every target takes ``image`` (default :data:`DEFAULT_IMAGE`) and measures its start
(``startup_seconds``). Without a Docker engine ``start()`` raises BackendUnavailable with one
message; a failed start tears down whatever it had started. URIs shown anywhere are redacted.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from harness.backends.base import register_target
from harness.backends.mongo_topology import (
    CONFIG_REPLICA_SET,
    DEFAULT_IMAGE,
    PORT,
    READY_LOG,
    ShardKeyKind,
    chunk_moves,
    initiate_replica_set,
    mongod_command,
    mongos_command,
    replica_set_config,
    require_docker,
    shard_key_spec,
    shard_names,
    wait_until,
)
from replicator.mongo import APPNAME, connect
from replicator.redact import redact_uri

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_IMAGE",
    "ReplicaSetContainerTarget",
    "ShardedContainerTarget",
    "StandaloneContainerTarget",
]


class _ContainerTarget:
    """Shared life cycle: check Docker, start, measure, tear down everything even on failure."""

    name = "testcontainers"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        shard_key: Sequence[str] = (),
        shard_key_kind: ShardKeyKind = "hashed",
        startup_timeout_s: float = 180.0,
        timeout_ms: int = 10_000,
    ) -> None:
        self.image = image
        # Only the sharded target shards collections; the others accept the scenario's settings
        # (the replicator still puts the shard key into its filters, which any topology accepts).
        self.shard_key = tuple(shard_key)
        self.shard_key_kind = shard_key_kind
        self.startup_timeout_s = startup_timeout_s
        self.timeout_ms = timeout_ms
        #: seconds from start() until the topology accepted connections (None before)
        self.startup_seconds: float | None = None
        self._uri = ""
        self._client: Any = None
        self._containers: list[Any] = []
        self._network: Any = None

    # -- TargetBackend -------------------------------------------------------------------------
    def start(self) -> None:
        if self._client is not None:
            return
        require_docker(self.name)
        began = time.perf_counter()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.perf_counter() - began, 3)
        log.info("%s started in %.1f s", self.describe(), self.startup_seconds)

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        problems = []
        for container in reversed(self._containers):
            try:
                container.stop()
            except Exception as error:  # go on: every other container must still go
                problems.append(f"{type(error).__name__}: {error}")
        self._containers.clear()
        network, self._network = self._network, None
        if network is not None:
            try:
                network.remove()
            except Exception as error:
                problems.append(f"network: {type(error).__name__}: {error}")
        if problems:
            log.warning("%s teardown: %s", self.name, redact_uri("; ".join(problems)))

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        return self._client[database][name]

    @property
    def client(self) -> Any:
        return self._client

    def describe(self) -> str:
        where = redact_uri(self._uri, self._uri) if self._uri else "not started"
        return f"{self.name} ({self.image}) at {where}"

    # -- building blocks (overridden by the unit tests) ----------------------------------------
    def _start(self) -> None:
        raise NotImplementedError

    def _connect(self, uri: str) -> Any:
        return connect(uri, appname=f"{APPNAME}-harness", server_selection_timeout_ms=self.timeout_ms)

    def _new_network(self) -> Any:
        from testcontainers.core.network import Network

        return Network().create()

    def _member(self, command: list[str], alias: str | None = None) -> Any:
        """Start one mongod/mongos container (registered first, so a failed start is removed)."""
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        container = (
            DockerContainer(self.image)
            .with_command(command)
            .with_exposed_ports(PORT)
            .waiting_for(
                LogMessageWaitStrategy(READY_LOG).with_startup_timeout(
                    timedelta(seconds=self.startup_timeout_s))
            )
        )
        if self._network is not None and alias:
            container.with_network(self._network).with_network_aliases(alias)
        self._containers.append(container)
        container.start()
        return container

    def _address(self, container: Any) -> str:
        return f"{container.get_container_host_ip()}:{container.get_exposed_port(PORT)}"

    def _wait_for_ping(self, what: str) -> None:
        wait_until(
            lambda: self._client.admin.command("ping"), timeout_s=self.startup_timeout_s, what=what
        )


@register_target("testcontainers-standalone")
class StandaloneContainerTarget(_ContainerTarget):
    """One mongod with root auth (a password made up per start, never shown)."""

    name = "testcontainers-standalone"

    def _start(self) -> None:
        from testcontainers.community.mongodb import MongoDbContainer

        container = MongoDbContainer(
            self.image, username="harness", password=secrets.token_urlsafe(18)
        )
        self._containers.append(container)
        container.start()
        self._uri = container.get_connection_url()
        self._client = self._connect(self._uri)
        # The image's entrypoint runs a first, local-only mongod to create the user and logs
        # "Waiting for connections" then too: wait until the real one takes an authenticated ping.
        self._wait_for_ping("mongod to accept authenticated connections")


@register_target("testcontainers-replset")
class ReplicaSetContainerTarget(_ContainerTarget):
    """A single-node replica set ``rs0``, reached from the host with ``directConnection=true``."""

    name = "testcontainers-replset"
    replica_set = "rs0"

    def _start(self) -> None:
        container = self._member(mongod_command(self.replica_set))
        self._uri = f"mongodb://{self._address(container)}/?directConnection=true"
        self._client = self._connect(self._uri)
        initiate_replica_set(
            self._client,
            replica_set_config(self.replica_set, [f"localhost:{PORT}"]),
            timeout_s=self.startup_timeout_s,
        )


@register_target("testcontainers-sharded")
class ShardedContainerTarget(_ContainerTarget):
    """Config server replica set + ``shards`` single-node shard replica sets + one mongos.

    Every container is on one private Docker network under its alias (``cfg``, ``shard1``, ...,
    ``mongos``), and each replica set's member address is ``alias:27017``, so the members and
    mongos find each other; the host reaches each container through its mapped port only
    (``directConnection=true`` while initiating a replica set, then the mongos).

    ``collection(db, name)`` shards ``db.name`` on ``shard_key`` first (``shard_key_kind``
    "hashed": MongoDB spreads the chunks of an empty collection over the shards; "range": split
    at ``split_points`` and move every other chunk to the next shard). ``shard_collection`` does it
    with another key.
    """

    name = "testcontainers-sharded"

    def __init__(
        self,
        *,
        shards: int = 2,
        split_points: Sequence[Mapping[str, Any]] = (),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if shards < 1:
            raise ValueError("a sharded cluster needs at least one shard")
        self.shards = shards
        self.split_points = [dict(p) for p in split_points]
        self.shard_names = shard_names(shards)
        self._sharded: dict[str, dict[str, Any]] = {}
        self._addresses: dict[str, str] = {}

    def _start(self) -> None:
        self._network = self._new_network()
        replica_sets = [(CONFIG_REPLICA_SET, True)] + [(name, False) for name in self.shard_names]
        members = [
            (name, configsvr,
             self._member(mongod_command(name, "configsvr" if configsvr else "shardsvr"), name))
            for name, configsvr in replica_sets
        ]
        for name, configsvr, container in members:
            self._addresses[name] = self._address(container)
            client = self._connect(f"mongodb://{self._addresses[name]}/?directConnection=true")
            try:
                initiate_replica_set(
                    client,
                    replica_set_config(name, [f"{name}:{PORT}"], configsvr=configsvr),
                    timeout_s=self.startup_timeout_s,
                )
            finally:
                client.close()
        router = self._member(
            mongos_command(CONFIG_REPLICA_SET, [f"{CONFIG_REPLICA_SET}:{PORT}"]), "mongos"
        )
        self._uri = f"mongodb://{self._address(router)}/"
        self._client = self._connect(self._uri)
        self._wait_for_ping("mongos to answer")
        for shard in self.shard_names:
            wait_until(
                functools.partial(self._client.admin.command, "addShard",
                                  f"{shard}/{shard}:{PORT}", name=shard),
                timeout_s=self.startup_timeout_s,
                what=f"mongos to add shard {shard}",
            )
        wait_until(self._accepts_writes, timeout_s=self.startup_timeout_s,
                   what="the sharded cluster to accept writes")

    def _accepts_writes(self) -> bool:
        probe = self._client["harness_probe"]
        probe.command("insert", "probe", documents=[{"at": time.time()}])
        probe.command("delete", "probe", deletes=[{"q": {}, "limit": 0}])
        return True

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        if self.shard_key and f"{database}.{name}" not in self._sharded:
            self.shard_collection(database, name)
        return self._client[database][name]

    def shard_collection(
        self,
        database: str,
        name: str,
        shard_key: Sequence[str] | None = None,
        kind: ShardKeyKind | None = None,
        split_points: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Shard ``database.name`` (empty) on ``shard_key``; return the key document used."""
        if self._client is None:
            self.start()
        fields = tuple(shard_key or self.shard_key)
        kind = kind or self.shard_key_kind
        points = self.split_points if split_points is None else [dict(p) for p in split_points]
        key = shard_key_spec(fields, kind)
        namespace = f"{database}.{name}"
        admin = self._client.admin
        primary = self._enable_sharding(database)
        admin.command("shardCollection", namespace, key=key)
        if kind == "range":
            # chunk_moves leaves the first chunk on shards[0]: the database's primary shard
            shards = [primary] + [name for name in self.shard_names if name != primary]
            for point, shard in chunk_moves(points, shards):
                admin.command("split", namespace, middle=point)
                admin.command("moveChunk", namespace, find=point, to=shard,
                              _waitForDelete=True)
        self._sharded[namespace] = key
        return key

    def _enable_sharding(self, database: str) -> str:
        """Create ``database`` with ``shard1`` as its primary shard; return its primary shard.

        MongoDB picks a new database's primary shard by least data, not in the order shards were
        added (MongoDB docs: "Primary Shard"), so it is named (``primaryShard``, MongoDB docs:
        enableSharding). A database that already exists keeps its primary; it is read back.
        """
        from pymongo.errors import OperationFailure

        wanted = self.shard_names[0]
        try:
            self._client.admin.command("enableSharding", database, primaryShard=wanted)
        except OperationFailure as error:  # the database exists with another primary shard
            log.info("enableSharding %s with primaryShard %s: %s", database, wanted, error)
            entry = self._client["config"]["databases"].find_one({"_id": database}) or {}
            return str(entry.get("primary", wanted))
        return wanted

    def shard_client(self, shard: str) -> Any:
        """A direct client to one shard's mongod (to see what that shard holds); close it."""
        if shard not in self._addresses:
            raise KeyError(f"no shard {shard!r}; shards: {', '.join(self.shard_names)}")
        return self._connect(f"mongodb://{self._addresses[shard]}/?directConnection=true")

    def stop(self) -> None:
        super().stop()
        self._sharded.clear()
        self._addresses.clear()

    def describe(self) -> str:
        layout = f"config server + {self.shards} shards + mongos"
        return f"{super().describe()} [{layout}]"
