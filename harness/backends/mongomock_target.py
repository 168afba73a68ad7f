"""``mongomock``: the embedded default target, in-process."""

from __future__ import annotations

from typing import Any

from harness.backends.base import register_target


@register_target("mongomock")
class MongomockTarget:
    name = "mongomock"

    def __init__(self) -> None:
        self._client: Any = None

    def start(self) -> None:
        import mongomock

        self._client = mongomock.MongoClient()

    def stop(self) -> None:
        self._client = None

    def collection(self, database: str, name: str) -> Any:
        if self._client is None:
            self.start()
        return self._client[database][name]

    def describe(self) -> str:
        return "mongomock (in-process)"
