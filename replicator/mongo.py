"""The one way the project builds a ``pymongo.MongoClient``.

Every caller (the Lambda handler, the ``replicator`` CLI, the export pool processes, the harness's
targets) gets the same options: its ``appname`` (visible in the server's log, ``currentOp`` and
``$currentOp``), the replicator's driver info, retryable writes, and a server selection timeout
that the URI may set and the caller may override. A URI pymongo cannot parse raises
:class:`replicator.errors.ConfigurationError` whose message never quotes the URI's credentials:
pymongo's own message may (an unescaped "@" in a password is read as part of the host).
"""

from __future__ import annotations

from typing import Any

from replicator.errors import ConfigurationError
from replicator.redact import error_detail

#: serverSelectionTimeoutMS when neither the caller nor the URI sets one. pymongo's default is
#: 30 s: too long for a start-up check or a Lambda invocation.
DEFAULT_TIMEOUT_MS = 10_000
#: The prefix of every ``appname``.
APPNAME = "ddb-mongo-replicator"


def connect(
    uri: str,
    *,
    appname: str = APPNAME,
    server_selection_timeout_ms: int | None = None,
    **options: Any,
) -> Any:
    """A MongoClient for ``uri`` (connecting lazily, as pymongo does).

    ``server_selection_timeout_ms``: None keeps the URI's ``serverSelectionTimeoutMS``, else
    :data:`DEFAULT_TIMEOUT_MS`. ``options`` go to MongoClient as they are (they win over the
    defaults here). Raises ConfigurationError (redacted) for a URI pymongo refuses.
    """
    # Looked up at call time: tests replace pymongo.MongoClient.
    import pymongo
    from pymongo.driver_info import DriverInfo
    from pymongo.errors import ConfigurationError as MongoConfigurationError
    from pymongo.errors import InvalidURI

    settings: dict[str, Any] = {
        "appname": appname,
        "driver": DriverInfo(name=APPNAME),
        # pymongo's default too, said here because every write path relies on it.
        "retryWrites": True,
    }
    if server_selection_timeout_ms is not None:
        settings["serverSelectionTimeoutMS"] = int(server_selection_timeout_ms)
    elif "serverselectiontimeoutms" not in uri.lower():
        settings["serverSelectionTimeoutMS"] = DEFAULT_TIMEOUT_MS
    settings.update(options)
    try:
        return pymongo.MongoClient(uri, **settings)
    except (InvalidURI, MongoConfigurationError, ValueError) as error:
        raise ConfigurationError(
            f"the MongoDB URI is not usable: {error_detail(error, uri)}"
        ) from None
