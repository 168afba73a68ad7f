"""The Lambda function's environment, read and checked once at cold start (handler.py).

Every value is checked before the first client exists, and a value that cannot work raises one
:class:`ConfigurationError` naming its source -- the variable, the secret's ARN, the parameter's
name -- and the rule it breaks, never the value (a URI holds a password; the other values are
held to the same rule so no message has to decide). Surrounding whitespace is removed from every
value (a variable, a secret or a parameter pasted with a trailing newline; no name or URI means
one): ``shop\\n`` would otherwise be a database of its own, and a URI ending in
``w=majority\\n`` fails every write with an unknown write concern.

* the MongoDB URI: :mod:`replicator.uri_source` (Secrets Manager, SSM or ``MONGODB_URI``);
* ``MONGODB_DATABASE`` / ``MONGODB_COLLECTION``: MongoDB's naming restrictions (MongoDB manual,
  "Naming Restrictions": a database name has no whitespace, none of ``/\\. "$`` and fewer than
  64 bytes; a collection name is not empty, has no ``$`` and does not start with ``system.``;
  pymongo refuses an empty dotted part), no control characters;
* ``MONGODB_TIMEOUT_MS``: a whole number of milliseconds above 0;
* ``REPLICATOR_READ_BACK_TABLE``: a table name or ARN without whitespace;
* the ``REPLICATOR_*`` settings: :meth:`replicator.settings.Settings.from_env`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replicator.errors import ConfigurationError
from replicator.settings import Settings

DATABASE = "MONGODB_DATABASE"
COLLECTION = "MONGODB_COLLECTION"
TIMEOUT_MS = "MONGODB_TIMEOUT_MS"
READ_BACK_TABLE = "REPLICATOR_READ_BACK_TABLE"
DEFAULT_TIMEOUT_MS = 10_000

_DATABASE_FORBIDDEN = frozenset('/\\. "$')


@dataclass(frozen=True)
class LambdaEnvironment:
    """What the handler builds its Replicator from (``uri`` is never printed)."""

    uri: str
    database: str
    collection: str
    timeout_ms: int
    read_back_table: str | None
    settings: Settings

    def __repr__(self) -> str:  # the URI holds a password
        return (f"LambdaEnvironment(database={self.database!r}, collection={self.collection!r}, "
                f"timeout_ms={self.timeout_ms}, read_back_table={self.read_back_table!r})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str],
                 client: Callable[[str], Any] | None = None) -> LambdaEnvironment:
        """Read and check everything; the URI is read last (Secrets Manager / SSM calls are made
        only once the rest is right). ``client(service)``: the AWS clients for the URI's secret or
        parameter (default: boto3's). Raises :class:`ConfigurationError`."""
        from replicator import uri_source

        missing = [v for v in (DATABASE, COLLECTION) if not environ.get(v, "").strip()]
        if not uri_source.configured(environ):
            missing.insert(0, " or ".join(uri_source.VARIABLES))
        if missing:
            raise ConfigurationError(f"set the environment variable(s) {', '.join(missing)}")
        database = database_name(environ[DATABASE], DATABASE)
        collection = collection_name(environ[COLLECTION], COLLECTION)
        timeout_ms = milliseconds(environ.get(TIMEOUT_MS), TIMEOUT_MS, DEFAULT_TIMEOUT_MS)
        read_back = (environ.get(READ_BACK_TABLE) or "").strip() or None
        if read_back is not None and not _plain(read_back):
            raise ConfigurationError(
                f"{READ_BACK_TABLE} has whitespace or a control character inside it (a DynamoDB "
                "table name or ARN has none)")
        settings = Settings.from_env(environ)
        uri = uri_source.mongodb_uri(environ, client)
        return cls(uri, database, collection, timeout_ms, read_back, settings)


def _plain(text: str) -> bool:
    return not any(character.isspace() or not character.isprintable() for character in text)


def database_name(raw: str, source: str) -> str:
    """``raw`` without surrounding whitespace, once MongoDB can name a database so."""
    name = raw.strip()
    if not _plain(name) or _DATABASE_FORBIDDEN & set(name):
        raise ConfigurationError(
            f"{source}: a MongoDB database name has no whitespace, control character or any of "
            '/ \\ . " $')
    if len(name.encode("utf-8")) >= 64:
        raise ConfigurationError(f"{source}: a MongoDB database name is shorter than 64 bytes")
    return name


def collection_name(raw: str, source: str) -> str:
    """``raw`` without surrounding whitespace, once MongoDB can name a collection so."""
    name = raw.strip()
    if (not name or not name.isprintable() or "$" in name or name.startswith("system.")
            or name.startswith(".") or name.endswith(".") or ".." in name):
        raise ConfigurationError(
            f"{source}: a MongoDB collection name is not empty, has no control character, no $ "
            "and no empty dotted part, and does not start with system.")
    return name


def milliseconds(raw: str | None, source: str, default: int) -> int:
    """A whole number of milliseconds above 0 (``default`` when unset or empty)."""
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{source} must be a whole number of milliseconds") from None
    if value <= 0:
        raise ConfigurationError(f"{source} must be above 0 (milliseconds)")
    return value
