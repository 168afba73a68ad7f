"""moto as a DynamoDB source: in-process (``moto``), as a threaded HTTP server in this process
(``moto-server``) or in a child process (``moto-process``, for load runs whose timing is reported).

Both hand out boto3 clients that carry dummy credentials themselves: nothing is written to
``os.environ`` (moto's own credential mocking is switched off), and the clients ignore the user's
AWS config files, ``AWS_PROFILE`` and ``AWS_ENDPOINT_URL``, so a developer's real setup can neither
break nor be reached by the harness.

``Boto3Source`` holds what every emulator-backed source shares (clients, create/delete table); the
DynamoDB Local backend builds on it too.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.backends.base import BackendUnavailable, Table, TableSpec, register_source

REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def make_client(
    service: str, *, endpoint_url: str | None = None, region: str = REGION, **config: Any
) -> Any:
    """A boto3 client with dummy credentials, isolated from the user's AWS configuration.

    ``account_id_endpoint_mode="disabled"`` keeps current botocore from sending DynamoDB Streams
    calls to an account-based endpoint that moto does not serve (see EMULATORS.md). ``config``
    overrides botocore ``Config`` fields (timeouts, retries).
    """
    from botocore.config import Config

    settings = Config(
        account_id_endpoint_mode="disabled",
        ignore_configured_endpoint_urls=True,
        proxies={},  # the emulators are on 127.0.0.1: never through an HTTP(S)_PROXY
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
    )
    with _sessions_lock:
        return _session(region).client(service, endpoint_url=endpoint_url,
                                       config=settings.merge(Config(**config)))


#: make_client's boto3 session per region, with botocore's built-in handlers it was made with. A
#: new session loads and parses botocore's JSON models again: ~0.1-0.2 s of CPU per client and
#: ~10^4 objects in reference cycles that only the cyclic GC's full collections free (measured,
#: botocore 1.40: 0.15 s per client from a fresh session, 0.006 s from a shared one; the models
#: are shared with the replicator CLI's sessions too, replicator/boto_session.py). Clients are
#: thread-safe, sessions are not: clients are made under the lock.
_sessions: dict[str, tuple[list[Any], Any]] = {}
_sessions_lock = threading.Lock()


def _session(region: str) -> Any:
    """The shared session for ``region`` (call with ``_sessions_lock`` held).

    A session takes botocore's ``BUILTIN_HANDLERS`` when it is made, and importing moto appends
    its request interceptor there: a session made before that would send its clients' calls past
    ``mock_aws`` to the real endpoint, so a changed list makes a new session.
    """
    import botocore.handlers
    import botocore.session

    from replicator.boto_session import new_session

    handlers = list(botocore.handlers.BUILTIN_HANDLERS)
    made = _sessions.get(region)
    if made is not None and made[0] == handlers:
        return made[1]
    # No profile (AWS_PROFILE naming a missing profile would raise), no config or credentials file.
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    session = new_session(core, region_name=region, **DUMMY_CREDENTIALS)
    _sessions[region] = (handlers, session)
    return session


def repair_binary_keys(parsed: dict[str, Any], **_: Any) -> None:
    """botocore ``after-call`` hook for GetRecords: undo moto's double base64 of binary ``Keys``.

    moto (5.2.1 measured) base64-encodes a binary key value once more in a stream record's
    ``Keys`` (boto3 then hands out the base64 text as bytes; read with ``json.loads`` by
    replicator/aws_json.py, it is base64 of base64 text); the images are right. The key is taken
    from the image when the record has one, else base64-decoded.
    """
    for record in parsed.get("Records") or []:
        dynamodb = record.get("dynamodb") or {}
        image = dynamodb.get("NewImage") or dynamodb.get("OldImage") or {}
        for name, value in (dynamodb.get("Keys") or {}).items():
            if "B" not in value:
                continue
            if "B" in image.get(name, {}):
                value["B"] = image[name]["B"]
            elif isinstance(value["B"], str):  # read raw (replicator/aws_json.py): base64 text
                value["B"] = base64.b64decode(value["B"]).decode("ascii")
            else:
                value["B"] = base64.b64decode(value["B"])


class Boto3Source:
    """Clients and table lifecycle shared by the emulator backends (subclasses set the endpoint)."""

    name = "boto3"
    region = REGION
    #: a cancelled TransactWriteItems leaves no trace in the stream, even for a reader polling
    #: while it runs (true of DynamoDB and DynamoDB Local; moto sets False, see the runner)
    atomic_transactions = True

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _configure(self, service: str, client: Any) -> None:
        """Subclasses adjust a new client here (event hooks)."""

    # -- subclass hooks ---------------------------------------------------------------------------
    def endpoint_url(self) -> str | None:
        """Where the clients go; ``None`` for in-process moto."""
        return None

    def _require_started(self) -> None:
        """Raise if the backend is not running (subclasses know how to tell)."""

    # -- clients ---------------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        self._require_started()
        with self._lock:
            if service not in self._clients:
                client = make_client(service, endpoint_url=self.endpoint_url(), region=self.region)
                self._configure(service, client)
                self._clients[service] = client
            return self._clients[service]

    def _forget_clients(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.close()

    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    def streams(self) -> Any:
        return self._client("dynamodbstreams")

    def kinesis(self) -> Any:
        """A ``kinesis`` client (the KDS source: harness/kinesis.py)."""
        return self._client("kinesis")

    def s3(self) -> Any:
        """An S3 client of the same endpoint (exports to S3: harness/distributed_map.py)."""
        return self._client("s3")

    # -- tables ----------------------------------------------------------------------------------
    def create_table(self, spec: TableSpec, *, timeout: float = 60.0) -> Table:
        """Create the table with its stream on, wait until it is ACTIVE, return it with its ARN."""
        client = self.dynamodb()
        client.create_table(**spec.create_table_request())
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            description = client.describe_table(TableName=spec.name)["Table"]
            if description.get("TableStatus") == "ACTIVE" and description.get("LatestStreamArn"):
                return Table(spec=spec, stream_arn=description["LatestStreamArn"],
                             details=description)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: table {spec.name!r} not ACTIVE with a stream after {timeout:.0f} s "
                    f"(status {description.get('TableStatus')!r})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def delete_table(self, table: Table, *, timeout: float = 30.0) -> None:
        """Delete the table (a table already gone is fine) and wait until it is gone."""
        client = self.dynamodb()
        missing = client.exceptions.ResourceNotFoundException
        try:
            client.delete_table(TableName=table.spec.name)
        except missing:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.describe_table(TableName=table.spec.name)
            except missing:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: table {table.spec.name!r} still there after {timeout:.0f} s")


@register_source("moto")
class MotoSource(Boto3Source):
    """moto in-process: ``mock_aws`` is active between ``start()`` and ``stop()``.

    While it is active, moto intercepts every boto3/botocore call of this process (that is how an
    in-process mock works); its tables vanish at ``stop()``. moto keeps one state per process, so
    two moto backends alive at once share their tables.
    """

    name = "moto"
    atomic_transactions = False  # moto 5.2: writes, emits, then rolls back (see runner.py)

    def __init__(self, *, repair_binary_keys: bool = True) -> None:
        super().__init__()
        self.repair_binary_keys = repair_binary_keys
        self._mock: Any = None

    def _configure(self, service: str, client: Any) -> None:
        if service == "dynamodbstreams" and self.repair_binary_keys:
            client.meta.events.register("after-call.dynamodb-streams.GetRecords", repair_binary_keys)

    def _require_started(self) -> None:
        if self._mock is None:
            raise RuntimeError("moto source not started: call start() first")

    def start(self) -> None:
        if self._mock is not None:
            return
        try:
            from moto import mock_aws
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise BackendUnavailable(
                "moto is not installed: pip install 'ddb-mongo-replicator[harness]' (the dev kit's "
                "extra; or just 'moto[dynamodb,server]>=5')"
            ) from error
        # mock_credentials=False: moto would otherwise put FOOBARKEY credentials in os.environ.
        mock = mock_aws(config={"core": {"mock_credentials": False}})
        mock.start()
        self._mock = mock

    def stop(self) -> None:
        self._forget_clients()
        mock, self._mock = self._mock, None
        if mock is not None:
            mock.stop()


_werkzeug_quiet = 0
_werkzeug_level = logging.NOTSET
_werkzeug_lock = threading.Lock()


def _quiet_werkzeug() -> None:
    global _werkzeug_quiet, _werkzeug_level
    with _werkzeug_lock:
        logger = logging.getLogger("werkzeug")
        if _werkzeug_quiet == 0:
            _werkzeug_level = logger.level
            logger.setLevel(logging.CRITICAL)  # no request lines, no tracebacks of 500s
        _werkzeug_quiet += 1


def _restore_werkzeug() -> None:
    global _werkzeug_quiet
    with _werkzeug_lock:
        _werkzeug_quiet -= 1
        if _werkzeug_quiet == 0:
            logging.getLogger("werkzeug").setLevel(_werkzeug_level)


@register_source("moto-server")
class MotoServerSource(Boto3Source):
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 and a free port, request logging off.

    The server runs in a thread of this process and shares moto's per-process state: its data is
    reset at ``stop()``. ``endpoint_url=`` uses a moto server that is already running instead
    (nothing is started, stopped or reset then).
    """

    name = "moto-server"
    atomic_transactions = False

    def __init__(self, endpoint_url: str | None = None, *, repair_binary_keys: bool = True) -> None:
        super().__init__()
        self.repair_binary_keys = repair_binary_keys
        self._external = endpoint_url.rstrip("/") if endpoint_url else None
        self._server: Any = None
        self._url: str | None = None

    def endpoint_url(self) -> str | None:
        return self._url

    def _require_started(self) -> None:
        if self._url is None:
            raise RuntimeError("moto-server source not started: call start() first")

    def _configure(self, service: str, client: Any) -> None:
        if service == "dynamodbstreams" and self.repair_binary_keys:
            client.meta.events.register("after-call.dynamodb-streams.GetRecords", repair_binary_keys)

    def start(self) -> None:
        if self._url is not None:
            return
        if self._external:
            self._url = self._external
            return
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise BackendUnavailable(
                "moto's server extras are not installed: pip install 'ddb-mongo-replicator[harness]' "
                "(the dev kit's extra; or just 'moto[dynamodb,server]>=5')"
            ) from error
        _quiet_werkzeug()
        try:
            # Port 0: the OS picks a free port when the socket is bound (no race, no busy port).
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
        except BaseException:
            _restore_werkzeug()
            raise
        self._server = server
        host, port = server.get_host_and_port()
        self._url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._forget_clients()
        server, self._server = self._server, None
        url, self._url = self._url, None
        if server is None:
            return
        try:
            with contextlib.suppress(Exception):  # moto's state outlives the server otherwise
                request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                opener.open(request, timeout=5).close()
            server.stop()
        finally:
            _restore_werkzeug()


@register_source("moto-process")
class MotoProcessSource(MotoServerSource):
    """moto's server in a child process on 127.0.0.1, stopped by its PID (load runs).

    On a free port; the emulator does not share the writer's interpreter and GIL.

    The child (:func:`serve_child`, run with ``python -c``) starts ``ThreadedMotoServer`` on port 0,
    prints the port, and exits when its standard input closes, so it never outlives this process.
    """

    name = "moto-process"

    def __init__(self, *, repair_binary_keys: bool = True, start_timeout_s: float = 60.0) -> None:
        super().__init__(repair_binary_keys=repair_binary_keys)
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        if self._url is not None:
            return
        try:
            import moto.server  # noqa: F401 - only to fail early with a clear message
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise BackendUnavailable(
                "moto's server extras are not installed: pip install 'ddb-mongo-replicator[harness]' "
                "(the dev kit's extra; or just 'moto[dynamodb,server]>=5')"
            ) from error
        # The child imports this very harness (a checkout may shadow an installed copy).
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p))
        process = subprocess.Popen(
            [sys.executable, "-c", "from harness.backends.moto_source import serve_child; "
                                   "serve_child()"], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._process = process
        assert process.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(process.stdout.readline()
                                                             if process.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(self.start_timeout_s)
        line = ready[0].strip() if ready else ""
        if not line.isdigit():
            self.stop()
            raise BackendUnavailable(
                f"moto server child process did not report its port within "
                f"{self.start_timeout_s:.0f} s (exit code {process.poll()})"
            )
        self._url = f"http://127.0.0.1:{line}"

    def stop(self) -> None:
        self._forget_clients()
        self._url = None
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()  # the child's signal to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def serve_child() -> None:
    """The child of :class:`MotoProcessSource`: serve until standard input closes."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    try:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or exited
    finally:
        server.stop()


# -- the stream's 24-hour retention, on moto -------------------------------------------------------
class MotoPatches:
    """Methods of moto's model classes replaced for a ``with`` block and restored on its exit (in
    reverse order): where a subclass makes moto behave as AWS does. ``account_id`` / ``region``
    name the backend the subclass reaches (moto's default account when None)."""

    def __init__(self, *, account_id: str | None = None, region: str = REGION) -> None:
        self.account_id = account_id
        self.region = region
        self._saved: list[tuple[Any, str, Any]] = []

    def _patch(self, *replacements: tuple[Any, str, Any]) -> None:
        """Each ``(owner, name, replacement)``: ``owner.name`` replaced until the block ends."""
        for owner, name, replacement in replacements:
            self._saved.append((owner, name, owner.__dict__[name]))
            setattr(owner, name, replacement)

    def __exit__(self, *_: Any) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)


class StreamRetention(MotoPatches):
    """DynamoDB Streams' retention on moto, whose streams never drop a record.

    DynamoDB Streams removes a record 24 hours after it was written; an ``AFTER_SEQUENCE_NUMBER``
    (or ``AT_SEQUENCE_NUMBER``) iterator before the oldest record still held, and an iterator that
    points there, answer ``TrimmedDataAccessException`` (GetShardIterator / GetRecords API
    reference). Inside this context, :meth:`trim` drops a table's oldest records from moto's own
    shard (moto keeps one ``StreamShard`` per table whose ``items`` list starts at
    ``starting_sequence_number``; measured on moto 5.2), and GetShardIterator / GetRecords answer
    that error as DynamoDB does. It reaches moto's backend, so it works where moto's state lives
    in this process: the in-process ``moto`` source and the ``moto-server`` source (a
    ``ThreadedMotoServer`` thread), whoever the client is -- a ``replicator`` subprocess too.
    Trim between requests: moto's models take no lock.
    """

    def __enter__(self) -> StreamRetention:
        from moto.core.exceptions import JsonRESTError
        from moto.dynamodbstreams import models

        def trimmed(message: str) -> Exception:
            return JsonRESTError("TrimmedDataAccessException", message)

        original_iterator = models.DynamoDBStreamsBackend.get_shard_iterator
        original_get = models.ShardIterator.get

        def get_shard_iterator(backend: Any, arn: str, shard_id: str, shard_iterator_type: str,
                               sequence_number: Any = None) -> Any:
            shard = backend._get_table_from_arn(arn).stream_shard
            oldest = shard.starting_sequence_number if shard is not None else 0
            if sequence_number is not None and (
                    (shard_iterator_type == "AFTER_SEQUENCE_NUMBER"
                     and int(sequence_number) + 1 < oldest)
                    or (shard_iterator_type == "AT_SEQUENCE_NUMBER"
                        and int(sequence_number) < oldest)):
                raise trimmed(f"SequenceNumber {sequence_number} is before the oldest record "
                              f"the stream holds ({oldest})")
            return original_iterator(backend, arn, shard_id, shard_iterator_type, sequence_number)

        def get(iterator: Any, limit: int = 1000) -> Any:
            oldest = iterator.stream_shard.starting_sequence_number
            if iterator.sequence_number < oldest:
                raise trimmed(f"the iterator points at {iterator.sequence_number}, before the "
                              f"oldest record the stream holds ({oldest})")
            return original_get(iterator, limit)

        self._patch((models.DynamoDBStreamsBackend, "get_shard_iterator", get_shard_iterator),
                    (models.ShardIterator, "get", get))
        return self

    def _shard(self, table_name: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[self.account_id or DEFAULT_ACCOUNT_ID][self.region]
        shard = backend.get_table(table_name).stream_shard
        if shard is None:
            raise ValueError(f"table {table_name} has no stream")
        return shard

    def oldest_sequence_number(self, table_name: str) -> int:
        """The sequence number of the oldest record the table's stream holds (or will hold)."""
        return int(self._shard(table_name).starting_sequence_number)

    def last_sequence_number(self, table_name: str) -> str | None:
        """The newest record's sequence number in the table's stream (None: no record)."""
        shard = self._shard(table_name)
        if not shard.items:
            return None
        return str(shard.starting_sequence_number + len(shard.items) - 1)

    def trim(self, table_name: str, through: str | int | None = None) -> int:
        """Drop the table's stream records up to ``through`` (a sequence number; default: every
        record so far), as 24 hours would; returns how many were dropped."""
        if not self._saved:
            raise RuntimeError("StreamRetention.trim() outside its `with` block")
        shard = self._shard(table_name)
        last = shard.starting_sequence_number + len(shard.items) - 1
        bound = last if through is None else min(int(through), last)
        count = max(0, bound - shard.starting_sequence_number + 1)
        shard.items = shard.items[count:]
        shard.starting_sequence_number += count
        return int(count)
