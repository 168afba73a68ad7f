"""Running a plan: the operations sent through a boto3 ``dynamodb`` client by one or more writer
threads (each key owned by one writer), with retries, a rate limit and a result of what was
written when."""

from __future__ import annotations

import queue
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from harness.backends.base import TableSpec
from harness.workload.planner import iter_operations
from harness.workload.spec import Item, KeyTuple, Operation, WorkloadResult, WorkloadSpec, key_tuple

# Retries: throttling-like errors always (the write did not happen); errors after which the write
# may or may not have happened (5xx, connection) only for idempotent operations.
MAX_ATTEMPTS = 8
BATCH_MAX_ATTEMPTS = 12
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 2.0
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)
AMBIGUOUS_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "ServiceUnavailable", "InternalServerErrorException"}
)
RETRYABLE_CANCELLATION = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
MAX_ERRORS_KEPT = 200


class _ConditionFailed(Exception):
    pass


class _RateLimiter:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


class _SharedExclusive:
    """A readers-writer lock: many shared holders, or one exclusive (which waiting blocks newcomers)."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.shared = 0
        self.exclusive = False
        self.waiting = 0

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        with self.condition:
            if exclusive:
                self.waiting += 1
                while self.exclusive or self.shared:
                    self.condition.wait()
                self.waiting -= 1
                self.exclusive = True
            else:
                while self.exclusive or self.waiting:
                    self.condition.wait()
                self.shared += 1
        try:
            yield
        finally:
            with self.condition:
                if exclusive:
                    self.exclusive = False
                else:
                    self.shared -= 1
                self.condition.notify_all()


def _cancellation_codes(error: Any) -> list[str]:
    response = getattr(error, "response", {}) or {}
    reasons = response.get("CancellationReasons") or []
    codes = [str(r.get("Code")) for r in reasons if isinstance(r, Mapping) and r.get("Code")]
    if not codes:
        message = str(response.get("Error", {}).get("Message", ""))
        match = re.search(r"\[(.*)\]", message)
        if match:
            codes = [c.strip() for c in match.group(1).split(",")]
    return codes


class _Runner:
    def __init__(self, client: Any, spec: TableSpec, workload: WorkloadSpec,
                 progress: Callable[[int, int], Any] | None) -> None:
        self.client = client
        self.spec = spec
        self.workload = workload
        self.progress = progress
        self.lock = threading.Lock()
        self.limiter = _RateLimiter(workload.rate_per_s)
        self.jitter = random.Random()  # backoff only: does not touch the plan
        # Transactions run alone when there are several writers. Writers own disjoint keys, so on
        # DynamoDB this costs a little throughput and nothing else; moto snapshots the whole table
        # for a transaction and restores the snapshot when it is cancelled, losing (or racing
        # with) other threads' writes.
        self.transactions = _SharedExclusive()
        self.result = WorkloadResult(total=workload.operations)

    # bookkeeping
    def error(self, message: str) -> None:
        with self.lock:
            self.result.error_count += 1
            if len(self.result.errors) < MAX_ERRORS_KEPT:
                self.result.errors.append(message)

    def wrote(self, keys: Sequence[KeyTuple], key_maps: Mapping[KeyTuple, Item]) -> None:
        now = time.time()
        with self.lock:
            for key in keys:
                self.result.last_write[key] = now
                self.result.writes.append((now, key_maps[key]))

    def finished(self, op: Operation, *, counted: bool) -> None:
        with self.lock:
            if counted:
                self.result.counts[op.op] = self.result.counts.get(op.op, 0) + 1
            self.done += 1
            done = self.done
            if self.progress is not None:
                try:
                    self.progress(done, self.result.total)
                except Exception as error:  # a broken progress bar must not stop the writes
                    self.result.error_count += 1
                    if len(self.result.errors) < MAX_ERRORS_KEPT:
                        self.result.errors.append(f"progress callback failed: {error!r}")
                    self.progress = None

    def backoff(self, attempt: int) -> None:
        with self.lock:
            self.result.retries += 1
            delay = self.jitter.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))
        time.sleep(delay)

    # calls
    def call(self, method: str, request: dict[str, Any], idempotent: bool) -> Any:
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        function = getattr(self.client, method)
        for attempt in range(MAX_ATTEMPTS):
            last = attempt == MAX_ATTEMPTS - 1
            try:
                return function(**request)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code == "ConditionalCheckFailedException":
                    raise _ConditionFailed(code) from None
                if code == "TransactionCanceledException":
                    reasons = _cancellation_codes(error)
                    if "ConditionalCheckFailed" in reasons:
                        raise _ConditionFailed(", ".join(reasons)) from None
                    retry = any(r in RETRYABLE_CANCELLATION for r in reasons)
                elif code in THROTTLING_CODES:
                    retry = True
                elif code in AMBIGUOUS_CODES or status >= 500:
                    retry = idempotent
                else:
                    retry = False
                if not retry or last:
                    raise
            except (ConnectionClosedError, ReadTimeoutError, RuntimeError):
                # RuntimeError: moto in-process is not thread-safe (a transaction copies the table
                # while another writer changes it); nothing was written
                if not idempotent or last:
                    raise
            except (EndpointConnectionError, ConnectTimeoutError):
                if last:
                    raise
            self.backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(self, op: Operation) -> None:
        self.limiter.wait()
        counted = False
        alone = op.method == "transact_write_items"
        try:
            with self.transactions.hold(exclusive=alone):
                self.send(op)
            counted = True
        except Exception as error:
            self.error(f"operation {op.index} ({op.op}, {op.method}): {type(error).__name__}: {error}")
        finally:
            self.finished(op, counted=counted)

    def send(self, op: Operation) -> None:
        if op.method == "batch_write_item":
            self.batch(op)
            return
        request = op.request
        if op.method == "transact_write_items":
            # unique per run: a token reused within 10 minutes would make AWS skip the write
            request = {**request, "ClientRequestToken": uuid.uuid4().hex}
        try:
            self.call(op.method, request, op.idempotent)
        except _ConditionFailed as failure:
            if not op.expect_condition_failure:
                raise RuntimeError(f"condition failed unexpectedly: {failure}") from None
            with self.lock:
                self.result.failed_conditional += 1
        else:
            if op.expect_condition_failure:
                raise RuntimeError("a write meant to fail its condition succeeded")
            self.wrote(op.writes, self.key_maps(op))

    def key_maps(self, op: Operation) -> dict[KeyTuple, Item]:
        names = [self.spec.partition_key] + ([self.spec.sort_key] if self.spec.sort_key else [])
        return {k: {n: {t: v} for (n, t), v in zip(names, k, strict=True)} for k in op.keys}

    def batch(self, op: Operation) -> None:
        pending = list(op.request["RequestItems"][self.spec.name])
        changing = set(op.writes)
        key_maps = self.key_maps(op)
        for attempt in range(BATCH_MAX_ATTEMPTS):
            response = self.call(
                "batch_write_item", {"RequestItems": {self.spec.name: pending}}, True
            )
            left = list((response.get("UnprocessedItems") or {}).get(self.spec.name, []))
            left_keys = {self.request_key(r) for r in left}
            sent = [self.request_key(r) for r in pending]
            self.wrote([k for k in sent if k not in left_keys and k in changing], key_maps)
            if not left:
                return
            pending = left
            if attempt < BATCH_MAX_ATTEMPTS - 1:
                self.backoff(attempt)
        raise RuntimeError(f"{len(pending)} items still unprocessed after {BATCH_MAX_ATTEMPTS} tries")

    def request_key(self, request: Mapping[str, Any]) -> KeyTuple:
        if "PutRequest" in request:
            return key_tuple(self.spec, request["PutRequest"]["Item"])
        return key_tuple(self.spec, request["DeleteRequest"]["Key"])

    def run(self) -> WorkloadResult:
        self.done = 0
        self.result.started_at = time.time()
        operations = iter_operations(self.spec, self.workload)
        if self.workload.writers == 1:
            for op in operations:
                self.execute(op)
        else:
            queues: list[queue.Queue[Operation | None]] = [
                queue.Queue(maxsize=256) for _ in range(self.workload.writers)
            ]

            def work(lane: queue.Queue[Operation | None]) -> None:
                while True:
                    op = lane.get()
                    if op is None:
                        return
                    self.execute(op)

            threads = [
                threading.Thread(target=work, args=(q,), name=f"workload-writer-{n}", daemon=True)
                for n, q in enumerate(queues)
            ]
            for thread in threads:
                thread.start()
            try:
                for op in operations:
                    queues[op.writer].put(op)
            finally:
                for lane in queues:
                    lane.put(None)
                for thread in threads:
                    thread.join()
        self.result.finished_at = time.time()
        self.result.writes.sort(key=lambda entry: entry[0])
        return self.result


def run_workload(
    client: Any,
    spec: TableSpec,
    workload: WorkloadSpec,
    *,
    progress: Callable[[int, int], Any] | None = None,
) -> WorkloadResult:
    """Write the workload to ``spec``'s table (created, empty) with a boto3 ``dynamodb`` client.

    ``progress(done, total)`` is called after every operation (from one thread at a time).
    Failures do not stop the run: they are counted in the result's ``errors``.
    """
    return _Runner(client, spec, workload, progress).run()
