"""The standalone poller's figures for Prometheus, and its health (``replicator run
--metrics-port``; docs/metrics.md).

* ``/metrics``: prometheus_client's exposition of :data:`replicator.metrics.FIGURES` (the same
  figures as the Lambda handler's CloudWatch metrics) labelled ``table`` and ``collection``, plus
  ``replicator_shard_last_advance_timestamp_seconds{shard}`` and the per-shard lag.
* ``/healthz``: 200 while every shard advances, 503 (with the stalled shards in the JSON body)
  when a shard has not advanced for ``stall_after_s``. A shard advances when a poll read it without
  error and every record it returned is applied and checkpointed; a shard whose stream has nothing
  new advances on every poll, so only a poller stuck in retries (stream reads or MongoDB writes)
  turns unhealthy. A poller that has not completed a poll for ``stall_after_s`` (since it started)
  is unhealthy too. Shards read to their end leave the check.

The tables of a migration file (``replicator run --migration-file``) share one registry
(:class:`Families`: one family per figure) and one port: :class:`TablesMetrics` hands each table's
Poller its :class:`PollerMetrics` and answers ``/healthz`` for all of them (503 naming a stalled or
stopped table).

Served by prometheus_client's WSGI app behind a small wsgiref router (the library's
``start_http_server`` serves only the metrics); a thread per request, so a slow scrape never
blocks the poller, which only updates the figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from replicator.core import BatchResult
from replicator.metrics import FIGURES

LABELS = ("table", "collection")
#: seconds; a batch of a few hundred records takes milliseconds to seconds
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HEALTH_PATHS = ("/healthz", "/health")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Families:
    """The metric families of one registry (prometheus_client refuses a name registered twice):
    made once, shared by the :class:`PollerMetrics` of every table a process follows, each
    writing its own ``table`` / ``collection`` labels."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.figures: dict[str, Any] = {}
        for figure in FIGURES:
            description = f"{figure.description} ({figure.name} in CloudWatch)"
            series: Any
            if figure.kind == "counter":
                series = Counter(figure.prometheus, description, LABELS, registry=registry)
            elif figure.kind == "histogram":
                series = Histogram(figure.prometheus, description, LABELS,
                                   buckets=DURATION_BUCKETS, registry=registry)
            else:
                series = Gauge(figure.prometheus, description, LABELS, registry=registry)
            self.figures[figure.name] = series
        self.advance = Gauge(
            "replicator_shard_last_advance_timestamp_seconds",
            "when the shard last advanced (read without error, its records applied and "
            "checkpointed), Unix seconds", (*LABELS, "shard"), registry=registry)
        self.shard_lag = Gauge(
            "replicator_shard_replication_lag_seconds",
            "now minus ApproximateCreationDateTime of the shard's last checkpointed record, "
            "when it was checkpointed", (*LABELS, "shard"), registry=registry)


class PollerMetrics:
    """Prometheus figures and health of one poller (one table into one collection).

    ``registry``: where the series live (a new one by default, so two pollers in one process, or
    tests, do not collide). ``clock``: monotonic seconds, for staleness; ``wall``: Unix seconds,
    for the last-advance timestamps; both injectable for tests.
    """

    def __init__(self, table: str, collection: str, *, stall_after_s: float = 300.0,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 families: Families | None = None) -> None:
        if stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be positive, not {stall_after_s}")
        self.table = table
        self.collection = collection
        self.stall_after_s = stall_after_s
        if families is None:
            families = Families(registry if registry is not None else CollectorRegistry())
        self.families = families
        self.registry = families.registry
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._series: dict[str, Any] = {
            name: series.labels(table, collection) for name, series in families.figures.items()}
        self._advance = families.advance
        self._shard_lag = families.shard_lag
        self._started = clock()
        self._last_poll: float | None = None
        self._shards: dict[str, float] = {}  # open shard -> clock() of its last advance

    # -- what the poller reports -------------------------------------------------------------------
    def observe_batch(self, result: BatchResult) -> None:
        """Count one batch's figures (every batch, retried ones included: they were sent)."""
        for figure in FIGURES:
            value = figure.value(result)
            if value is None:
                continue
            series = self._series[figure.name]
            if figure.kind == "counter":
                series.inc(value)
            elif figure.kind == "histogram":
                series.observe(value / 1000.0)  # milliseconds -> Prometheus' base unit
            else:
                series.set(value / 1000.0)

    def polled(self, shard_ids: Iterable[str]) -> None:
        """A poll completed; ``shard_ids`` (read without error, nothing to apply) advanced."""
        now = self._clock()
        with self._lock:
            self._last_poll = now
        for shard_id in shard_ids:
            self.advanced(shard_id)

    def advanced(self, shard_id: str, lag_s: float | None = None) -> None:
        """``shard_id`` advanced now (its records up to the last read are checkpointed)."""
        with self._lock:
            self._shards[shard_id] = self._clock()
        self._advance.labels(self.table, self.collection, shard_id).set(self._wall())
        if lag_s is not None:
            self._shard_lag.labels(self.table, self.collection, shard_id).set(lag_s)

    def finished(self, shard_id: str) -> None:
        """``shard_id`` is read to its end: it can no longer stall."""
        with self._lock:
            self._shards.pop(shard_id, None)

    # -- health ------------------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report): the report names the seconds since each shard advanced and since
        the last completed poll, and which of them are past ``stall_after_s``."""
        now = self._clock()
        with self._lock:
            since_poll = now - (self._last_poll if self._last_poll is not None else self._started)
            shards = {shard: now - at for shard, at in sorted(self._shards.items())}
        stalled = sorted(shard for shard, age in shards.items() if age > self.stall_after_s)
        poll_stalled = since_poll > self.stall_after_s
        healthy = not stalled and not poll_stalled
        return healthy, {
            "status": "ok" if healthy else "stalled",
            "table": self.table,
            "collection": self.collection,
            "stall_after_s": self.stall_after_s,
            "seconds_since_last_poll": round(since_poll, 3),
            "stalled_shards": stalled,
            "seconds_since_shard_advanced": {s: round(a, 3) for s, a in shards.items()},
        }

    # -- HTTP --------------------------------------------------------------------------------------
    def wsgi_app(self) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        """``/healthz`` (and ``/health``) here; anything else to prometheus_client's app."""
        return health_and_metrics_app(self.health, self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve :meth:`wsgi_app` on ``host:port`` (0: a free port) in a daemon thread."""
        return MetricsServer(self.wsgi_app(), host, port)


def health_and_metrics_app(
    health: Callable[[], tuple[bool, dict[str, Any]]], registry: CollectorRegistry,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """``/healthz`` (and ``/health``): ``health()``'s report as JSON, 200 or 503; anything else
    to prometheus_client's app over ``registry``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            healthy, report = health()
            body = json.dumps(report).encode()
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
            return [body]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    return app


class TablesMetrics:
    """The figures and the one health of every table a process follows (``replicator run
    --migration-file``): one registry, one :class:`PollerMetrics` per table (:meth:`table`, its
    series labelled with the table and its collection), and a ``/healthz`` that is 200 only while
    every table is healthy and none has stopped (:meth:`stopped`). The JSON body has each table's
    own report under ``tables`` and the stopped ones, with why and the exit code, under
    ``stopped_tables``."""

    def __init__(self, *, stall_after_s: float = 300.0,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.families = Families(registry if registry is not None else CollectorRegistry())
        self.registry = self.families.registry
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._tables: dict[str, PollerMetrics] = {}
        self._stopped: dict[str, dict[str, Any]] = {}

    def table(self, table: str, collection: str) -> PollerMetrics:
        """The figures of ``table`` (written into ``collection``), for its Poller."""
        metrics = PollerMetrics(table, collection, stall_after_s=self.stall_after_s,
                                clock=self._clock, wall=self._wall, families=self.families)
        with self._lock:
            self._tables[table] = metrics
        return metrics

    def stopped(self, table: str, exit_code: int, why: str) -> None:
        """``table``'s poller ended on an error: unhealthy until the process restarts."""
        with self._lock:
            self._stopped[table] = {"exit_code": exit_code, "error": why}

    def health(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            tables = dict(self._tables)
            stopped = dict(self._stopped)
        reports = {name: metrics.health() for name, metrics in sorted(tables.items())}
        stalled = sorted(name for name, (healthy, _) in reports.items()
                         if not healthy and name not in stopped)
        healthy = not stalled and not stopped
        return healthy, {
            "status": "ok" if healthy else ("stopped" if stopped else "stalled"),
            "stall_after_s": self.stall_after_s,
            "stalled_tables": stalled,
            "stopped_tables": stopped,
            "tables": {name: report for name, (_, report) in reports.items()},
        }

    def wsgi_app(self) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
        return health_and_metrics_app(self.health, self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve :meth:`wsgi_app` on ``host:port`` (0: a free port) in a daemon thread."""
        return MetricsServer(self.wsgi_app(), host, port)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log line on stderr per scrape (wsgiref writes one by default)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """An HTTP server in a daemon thread; ``port`` is the bound one; :meth:`close` stops it."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._server = make_server(host, port, app, _ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self.host = host
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="replicator-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
