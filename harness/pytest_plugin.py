"""pytest plugin: a DynamoDB table with a stream, a MongoDB target, and a replication between them.

Installed with ``pip install "ddb-mongo-replicator[harness]"`` it loads itself (entry point
``pytest11``); in a checkout, ``-p harness.pytest_plugin``. Fixtures (see docs/pytest-plugin.md):

* ``replication_source`` (session): a started source backend -- ``--replication-source`` (moto,
  the default; ``moto-server``; ``dynamodb-local``).
* ``replication_target`` (session): a started target backend -- ``--replication-target``
  (``mongoeco`` by default on Python 3.13+ where installed, else ``mongomock``; ``uri:<mongodb
  URI>``; ``testcontainers-standalone|replset|sharded``).
* ``dynamodb_table``: a factory ``dynamodb_table("orders", partition_key=("id", "S"), ...)`` for a
  table with a stream, deleted after the test.
* ``target_collection``: a factory for an empty target collection (for a handler of your own).
* ``replication``: a factory ``replication(table, settings=..., handler=..., esm=...)`` returning
  a :class:`harness.replication.Replication`: ``sync()``, ``wait_until_converged()`` (the
  :class:`~harness.convergence.Diff`), ``assert_converged()``, ``documents()``, ``report``.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness.backends.base import (
    SOURCES,
    TARGETS,
    BackendUnavailable,
    SourceBackend,
    Table,
    TableSpec,
    TargetBackend,
    load_sources,
    load_targets,
    source_backend,
    target_backend,
)

if TYPE_CHECKING:
    from harness.replication import Replication

DATABASE = "replication_tests"


def default_target() -> str:
    """mongoeco (a MongoDB-compatible engine, Python 3.13+) where it is registered, else mongomock."""
    try:
        load_targets()
    except ImportError:  # the plugin loads in every pytest run of an install without the extras
        return "mongomock"
    if sys.version_info >= (3, 13) and "mongoeco" in TARGETS:
        return "mongoeco"
    return "mongomock"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replication", "DynamoDB Streams -> MongoDB replication fixtures")
    group.addoption(
        "--replication-source", default=None, metavar="NAME",
        help="DynamoDB source of the dynamodb_table fixture: moto (default), moto-server, "
             "dynamodb-local",
    )
    group.addoption(
        "--replication-target", default=None, metavar="NAME",
        help="MongoDB target: mongoeco (default on Python 3.13+), mongomock, uri:<mongodb URI>, "
             "testcontainers-standalone|replset|sharded",
    )
    parser.addini("replication_source", "default for --replication-source", default=None)
    parser.addini("replication_target", "default for --replication-target", default=None)


def _choice(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--replication-{name}")
    return value or config.getini(f"replication_{name}") or None


def parse_target(text: str) -> tuple[str, dict[str, Any]]:
    """``uri:<uri>`` -> ("uri", {"uri": ...}); a registered name -> (name, {}).

    Raises pytest.UsageError naming the known targets for anything else (a typo ends here, not in a
    traceback).
    """
    if text.startswith("uri:"):
        uri = text[len("uri:"):]
        if not re.match(r"mongodb(\+srv)?://", uri):
            raise pytest.UsageError("--replication-target uri:<uri> needs a mongodb:// URI")
        return "uri", {"uri": uri}
    load_targets()
    if text not in TARGETS or text == "uri":
        known = ", ".join(sorted(n for n in TARGETS if n != "uri"))
        raise pytest.UsageError(
            f"--replication-target: unknown target {text!r}; known: {known}, uri:<mongodb URI>"
        )
    return text, {}


def parse_source(text: str) -> str:
    load_sources()
    if text not in SOURCES:
        raise pytest.UsageError(
            f"--replication-source: unknown source {text!r}; known: {', '.join(sorted(SOURCES))}"
        )
    return text


def pytest_configure(config: pytest.Config) -> None:
    # Validate the choices before collection, so a typo is one line, not an error per test.
    source = _choice(config, "source")
    if source:
        parse_source(source)
    target = _choice(config, "target")
    if target:
        parse_target(target)


def pytest_report_header(config: pytest.Config) -> str:
    source = _choice(config, "source") or "moto"
    target = _choice(config, "target") or default_target()
    if target.startswith("uri:"):
        target = "uri"  # never print a URI: it may carry a password
    return f"replication: source={source} target={target}"


def _start(backend: SourceBackend | TargetBackend, kind: str, *, chosen: bool) -> None:
    """Start ``backend``; one that cannot start here skips the tests only when nobody chose it.

    A source or target named by ``--replication-<kind>`` or the ini key (``chosen``) that does not
    answer fails the tests that use it: a CI job with a wrong URI must not go green on skips.
    """
    try:
        backend.start()
    except BackendUnavailable as error:
        backend.stop()
        message = f"replication {kind} {backend.name!r} unavailable: {error}"
        if chosen:
            pytest.fail(f"{message} (chosen with --replication-{kind} or the ini key "
                        f"replication_{kind})", pytrace=False)
        pytest.skip(message)
    except BaseException:
        backend.stop()
        raise


@pytest.fixture(scope="session")
def replication_source(pytestconfig: pytest.Config) -> Iterator[SourceBackend]:
    """The started DynamoDB source (``--replication-source``), shared by the session."""
    chosen = _choice(pytestconfig, "source")
    backend = source_backend(parse_source(chosen or "moto"))
    _start(backend, "source", chosen=chosen is not None)
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def replication_target(pytestconfig: pytest.Config) -> Iterator[TargetBackend]:
    """The started MongoDB target (``--replication-target``), shared by the session."""
    chosen = _choice(pytestconfig, "target")
    name, options = parse_target(chosen or default_target())
    backend = target_backend(name, **options)
    _start(backend, "target", chosen=chosen is not None)
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture
def dynamodb_table(replication_source: SourceBackend) -> Iterator[Callable[..., Table]]:
    """``dynamodb_table(name, partition_key=("id", "S"), sort_key=None,
    stream_view_type="NEW_AND_OLD_IMAGES")`` or ``dynamodb_table(TableSpec(...))``: a new table
    (a unique suffix is added to the name), deleted after the test."""
    created: list[Table] = []

    def make(
        name: str | TableSpec = "table",
        partition_key: tuple[str, str] = ("id", "S"),
        sort_key: tuple[str, str] | None = None,
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
    ) -> Table:
        spec = name if isinstance(name, TableSpec) else TableSpec(
            name, partition_key, sort_key, stream_view_type)
        spec = TableSpec(f"{spec.name}-{uuid.uuid4().hex[:8]}", spec.partition_key,
                         spec.sort_key, spec.stream_view_type)
        table = replication_source.create_table(spec)
        created.append(table)
        return table

    yield make
    for table in created:
        replication_source.delete_table(table)


@pytest.fixture
def target_collection(replication_target: TargetBackend) -> Iterator[Callable[..., Any]]:
    """``target_collection(name=None, database="replication_tests")``: an empty collection of the
    target (a unique name when none is given), dropped after the test."""
    made: list[Any] = []

    def make(name: str | None = None, database: str = DATABASE) -> Any:
        collection = replication_target.collection(database, name or f"c-{uuid.uuid4().hex[:12]}")
        collection.delete_many({})
        made.append(collection)
        return collection

    yield make
    for collection in made:
        drop = getattr(collection, "drop", None)
        if callable(drop):
            drop()


@pytest.fixture
def replication(
    replication_source: SourceBackend, target_collection: Callable[..., Any]
) -> Iterator[Callable[..., Replication]]:
    """``replication(table, settings=None, handler="replicator", esm=None, collection=None)``:
    the table's stream driven through the handler by the event source mapping emulation.

    ``settings``: a :class:`replicator.settings.Settings` or a mapping of its fields (transforms,
    id_mapping, numbers...). ``handler``: "replicator", "baseline", "module:function" or a
    callable ``(event, context)``. ``esm``: an EsmConfig, CreateEventSourceMapping names, or the
    path of a SAM template (default: AWS's defaults with ReportBatchItemFailures).
    """
    # Imported here: loading the plugin (every pytest run where the package is installed) stays
    # light.
    from harness.replication import Replication

    made: list[Replication] = []

    def make(table: Table, *, collection: Any = None, **options: Any) -> Replication:
        running = Replication(
            replication_source, table,
            collection if collection is not None else target_collection(), **options,
        )
        made.append(running)
        return running

    yield make
    for running in made:
        running.close()
