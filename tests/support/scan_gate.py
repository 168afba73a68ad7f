"""A deterministic point inside a running copy: moto's Scan held in its server (which runs in the
test's process) until the test has done what it must do mid-copy (the migration journeys)."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any


class ScanGate:
    """Holds every Scan of ``table`` that continues a segment (``ExclusiveStartKey``) inside moto's
    server until :meth:`release`: a segment asks for its second page only after its first page
    is written and its position saved, so once ``segments`` requests wait, every segment saved
    exactly one page. Reaches moto's backend (its server runs in this process)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.waiting = 0
        self._open = threading.Event()
        self._changed = threading.Condition()
        self._original: Any = None

    def __enter__(self) -> ScanGate:
        from moto.dynamodb.models import DynamoDBBackend

        original = self._original = DynamoDBBackend.__dict__["scan"]
        gate = self

        def scan(backend: Any, table_name: str, filters: Any, limit: Any,
                 exclusive_start_key: Any, *args: Any, **kwargs: Any) -> Any:
            if table_name == gate.table and exclusive_start_key and not gate._open.is_set():
                with gate._changed:
                    gate.waiting += 1
                    gate._changed.notify_all()
                gate._open.wait()
            return original(backend, table_name, filters, limit, exclusive_start_key, *args,
                            **kwargs)

        setattr(DynamoDBBackend, "scan", scan)  # noqa: B010 - moto's method, typed otherwise
        return self

    def __exit__(self, *_: Any) -> None:
        from moto.dynamodb.models import DynamoDBBackend

        self.release()
        setattr(DynamoDBBackend, "scan", self._original)  # noqa: B010

    def wait_for(self, count: int, process: subprocess.Popen[Any], timeout: float) -> bool:
        """Until ``count`` Scans are held (True), or the process ended / the bound passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.waiting < count and process.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return self.waiting >= count

    def release(self) -> None:
        self._open.set()
