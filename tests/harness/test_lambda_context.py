"""harness.esm.lambda_context: the emulated invocation's context, and the replicator's deadline
through the event source mapping emulation (every command carries ``maxTimeMS``). No timing:
the context runs on a fake clock, so its remaining time is what the test says."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import MongoClient

from harness.esm.config import EsmConfig
from harness.esm.lambda_context import DEFAULT_TIMEOUT_S, LambdaContext, with_context
from harness.esm.mapping import EventSourceMapping
from replicator.core import Replicator
from support.mongo_commands import Commands

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2024-01-01T00:00:00.000"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_context_counts_down_from_the_function_timeout() -> None:
    clock = Clock()
    context = LambdaContext(clock=clock)
    assert context.timeout_s == DEFAULT_TIMEOUT_S == 3.0  # AWS's default function timeout
    assert context.get_remaining_time_in_millis() == 3000
    clock.now += 1.25
    assert context.get_remaining_time_in_millis() == 1750
    clock.now += 10
    assert context.get_remaining_time_in_millis() == 0
    assert context.ends_at == 103.0


@pytest.mark.parametrize("timeout", [0, -1, 901])
def test_a_function_timeout_is_within_awss_range(timeout: float) -> None:
    with pytest.raises(ValueError):
        LambdaContext(timeout)


def test_the_emulated_invocations_send_their_deadline_with_every_command(
    mongoeco_db: Any
) -> None:
    commands = Commands()
    host, port = mongoeco_db.client.address
    client: Any = MongoClient(host, port, event_listeners=[commands])
    try:
        replicator = Replicator(client[mongoeco_db.name]["items"])
        # 900 s (AWS's maximum), fixed: the context's clock does not move
        handler = with_context(replicator.handle, 900, clock=Clock())
        mapping = EventSourceMapping(handler, EsmConfig(batch_size=2,
                                                        report_batch_item_failures=True),
                                     stream_arn=ARN, partition_key="id")
        mapping.feed("shardId-1", [
            {"eventID": str(n), "eventName": "INSERT", "eventSource": "aws:dynamodb",
             "dynamodb": {"Keys": {"id": {"S": f"k{n}"}}, "SequenceNumber": f"{n:021d}",
              "NewImage": {"id": {"S": f"k{n}"}}, "StreamViewType": "NEW_IMAGE"}}
            for n in range(1, 6)
        ])
        report = mapping.drain()
        mapping.close()
    finally:
        client.close()
    assert report.invocations == 3
    assert mongoeco_db["items"].count_documents({}) == 5
    writes = [command for name, command in commands.sent if name == "update"]
    assert len(writes) >= 3
    # 900 s left, a 1 s margin: at most 899 s however long the run took
    during = [command for name, command in commands.sent if name != "endSessions"]  # close()
    assert all(0 < command["maxTimeMS"] <= 899_000 for command in during)
