"""A Lambda context object for emulated invocations: the part the replicator reads.

AWS Lambda passes the handler a context whose ``get_remaining_time_in_millis()`` returns "the
number of milliseconds left before the execution times out" (AWS Lambda developer guide, "Using
the Lambda context object to retrieve Python function information"); the function timeout is
3 s by default, at most 900 s ("Configure Lambda function timeout"). The replicator turns it into
the deadline of the batch's MongoDB commands (replicator/deadline.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

#: AWS's default function timeout and its maximum
DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 900.0


class LambdaContext:
    """The context of one invocation that started at ``clock()`` now and times out
    ``timeout_s`` later. ``ends_at`` is that moment on ``clock``'s scale."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, *,
                 clock: Callable[[], float] = time.monotonic,
                 function_name: str = "replicator") -> None:
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"a function timeout is 0..{MAX_TIMEOUT_S:g} s, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.clock = clock
        self.ends_at = clock() + timeout_s
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 128

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left (never negative), rounded down as the runtime does."""
        return max(0, int((self.ends_at - self.clock()) * 1000))


def with_context(
    handle: Callable[[dict[str, Any], Any], Any], timeout_s: float = DEFAULT_TIMEOUT_S, *,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[dict[str, Any]], Any]:
    """``handle(event, context)`` as the event source mapping emulation calls a handler,
    ``handler(event)``: each call gets a fresh context of a function with ``timeout_s``."""

    def invoke(event: dict[str, Any]) -> Any:
        return handle(event, LambdaContext(timeout_s, clock=clock))

    return invoke
