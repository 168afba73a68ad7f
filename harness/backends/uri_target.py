"""``uri``: any MongoDB reachable by a URI (``--target-uri`` or ``MONGODB_URI``)."""

from __future__ import annotations

import os
from typing import Any

from harness.backends.base import BackendUnavailable, register_target
from replicator.errors import ConfigurationError
from replicator.mongo import APPNAME, connect
from replicator.redact import error_detail, redact_uri


@register_target("uri")
class UriTarget:
    """Any MongoDB reachable by a URI (--target-uri or MONGODB_URI), shown redacted."""

    name = "uri"

    def __init__(self, uri: str | None = None, *, timeout_ms: int = 10_000) -> None:
        self.uri = uri or os.environ.get("MONGODB_URI", "")
        self.timeout_ms = timeout_ms
        self._client: Any = None

    def start(self) -> None:
        if not self.uri:
            raise BackendUnavailable("target 'uri' needs --target-uri or MONGODB_URI")
        from pymongo.errors import PyMongoError

        try:
            self._client = connect(self.uri, appname=f"{APPNAME}-harness",
                                   server_selection_timeout_ms=self.timeout_ms)
        except ConfigurationError as error:  # already redacted by connect
            raise BackendUnavailable(
                f"not a valid MongoDB URI ({self.describe()}): {error} (escape special "
                "characters in the user name and password, RFC 3986)"
            ) from None
        # The probe has its own short server selection timeout: pymongo retries a refused
        # connection until serverSelectionTimeoutMS ends (10 s here), a long wait for a typo.
        probe = connect(self.uri, appname=f"{APPNAME}-harness",
                        server_selection_timeout_ms=min(self.timeout_ms, PROBE_TIMEOUT_MS))
        try:
            probe.admin.command("ping")
        except PyMongoError as error:
            self._client.close()
            self._client = None
            raise BackendUnavailable(
                f"cannot reach MongoDB at {self.describe()}: {error_detail(error, self.uri)}"
            ) from None
        finally:
            probe.close()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        return self._client[database][name]

    @property
    def client(self) -> Any:
        return self._client

    def describe(self) -> str:
        return redact_uri(self.uri)


# Enough for a server on the network to answer; a refused or unanswered one fails within it.
PROBE_TIMEOUT_MS = 2_000
