"""The invocation's deadline: no MongoDB command of an invocation may run after Lambda's timeout.

Why: a Lambda invocation that times out is killed, but its last bulk write may still be on its
way to, or queued in, the server. Lambda redelivers the batch (from the start, or from the
reported item) only after the invocation ended; if the dead invocation's bulk were executed
*after* that redelivery and later batches (a delete of the key) completed, its older upsert would
find no document and insert it again, and no re-check runs in a dead sandbox
(docs/write-errors.md, "The tombstone window").

How: every MongoDB call of a batch runs inside ``pymongo.timeout(seconds)`` (client-side
operation timeout, pymongo >= 4.2; "Client Side Operations Timeout" specification). pymongo then
sends ``maxTimeMS`` = the time left (minus its measured round trip) with every command of the
block, bulk writes included, and refuses to send one whose time is already up
(``ExecutionTimeout``, code 50). The server interrupts a command still running ``maxTimeMS``
after it started it (MaxTimeMSExpired, code 50; an interrupted write command fails as a whole --
SERVER-45943 -- and what it applied before that was applied before the deadline). The deadline is the
invocation's remaining time (``context.get_remaining_time_in_millis()``, AWS Lambda "Python
context object") minus a margin, so nothing an invocation sent is applied after its own timeout.

Residual: ``maxTimeMS`` counts from when the server starts the command. A command sent at ``t``
with ``maxTimeMS = deadline - t`` and started ``d`` later runs until ``deadline + d`` at most:
the margin is the delay (network, an overloaded server) tolerated. On a sharded cluster, mongos
forwards ``maxTimeMS`` of write commands to the shards only from MongoDB 4.7 (SERVER-46187).

:func:`remaining` tells anyone inside the block (callers, test doubles, the harness's emulated
server) how much time the current batch has left, without pymongo internals.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pymongo

#: monotonic time at which the current batch's MongoDB I/O must be over; None outside a batch
#: that has a deadline
_DEADLINE: ContextVar[float | None] = ContextVar("replicator_deadline", default=None)

#: the default margin: this share of the remaining time, at most DEFAULT_MARGIN_CAP_S
DEFAULT_MARGIN_SHARE = 0.1
DEFAULT_MARGIN_CAP_S = 1.0


def remaining_in_context(context: Any) -> float | None:
    """Seconds left before a Lambda context's invocation times out; None without a context (or
    with an object that has no ``get_remaining_time_in_millis``)."""
    method = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(method):
        return None
    return float(method()) / 1000.0


def margin(remaining_s: float, configured_s: float | None = None) -> float:
    """The time kept back from ``remaining_s``: ``configured_s``, or by default 10 % of it, at
    most 1 s: room for the response, and the delay tolerated between sending a command and the
    server starting it (see the module docstring)."""
    if configured_s is not None:
        return configured_s
    return min(DEFAULT_MARGIN_CAP_S, DEFAULT_MARGIN_SHARE * remaining_s)


def budget(remaining_s: float | None, configured_margin_s: float | None = None) -> float | None:
    """Seconds the batch's MongoDB I/O may take: the remaining time minus the margin (may be
    <= 0: then nothing may be sent); None when there is no deadline."""
    if remaining_s is None:
        return None
    return remaining_s - margin(remaining_s, configured_margin_s)


@contextlib.contextmanager
def bounded(seconds: float | None, *, since: float | None = None) -> Iterator[None]:
    """Run the block's MongoDB I/O under a deadline ``seconds`` after ``since`` (a
    ``time.monotonic()`` reading; default: now). None: no deadline.

    ``seconds`` must be > 0 (the caller writes nothing otherwise). A deadline already past when
    the block starts still holds: pymongo then sends nothing (``ExecutionTimeout``).
    """
    if seconds is None:
        yield
        return
    if seconds <= 0:
        raise ValueError(f"a deadline must be in the future, got {seconds} s")
    end = (time.monotonic() if since is None else since) + seconds
    token = _DEADLINE.set(end)
    try:
        # pymongo.timeout(0) would mean "no timeout": a past deadline becomes the smallest one.
        with pymongo.timeout(max(end - time.monotonic(), 1e-6)):
            yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the current batch's deadline (negative once passed); None outside a
    batch with a deadline. Context-local: another thread or task does not see it."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()
