"""The KDS source (harness/kinesis.py): the bounded shuffle, the KDS record shape, a scenario
through moto's Kinesis, chaos on it and the planted bug ``arrival_order``."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from harness.kinesis import KdsSettings, Shuffler, kds_change


def test_the_shuffle_is_bounded_and_keeps_every_change() -> None:
    window = 5
    shuffler = Shuffler(window, 0.3, random.Random(7))
    out: list[dict[str, int]] = []
    for position in range(400):
        out += shuffler.add({"n": position})
    out += shuffler.flush()
    numbers = [change["n"] for change in out]
    assert sorted(set(numbers)) == list(range(400))
    assert len(numbers) - 400 == shuffler.duplicated > 0
    # each copy goes out fewer than `window` places after the changes made after it
    for index, number in enumerate(numbers):
        later_before = {n for n in numbers[:index] if n > number}
        assert len(later_before) < window
    assert numbers != sorted(numbers)  # it did reorder


def test_in_order_without_a_window_or_duplicates() -> None:
    shuffler = Shuffler(1, 0.0, random.Random(1))
    out = [c["n"] for p in range(50) for c in shuffler.add({"n": p})] + \
        [c["n"] for c in shuffler.flush()]
    assert out == list(range(50))


def test_the_kds_record_shape() -> None:
    record = {"eventID": "e1", "eventName": "MODIFY", "awsRegion": "us-east-1",
              "dynamodb": {"ApproximateCreationDateTime": 1700000000.123456, "SequenceNumber": "9",
                           "Keys": {"id": {"S": "a"}}, "NewImage": {"id": {"S": "a"}},
                           "OldImage": {"id": {"S": "a"}, "x": {"N": "1"}}, "SizeBytes": 9}}
    ms = kds_change(record, table_name="t")
    assert ms["dynamodb"]["ApproximateCreationDateTime"] == 1700000000123
    assert ms["dynamodb"]["ApproximateCreationDateTimePrecision"] == "MILLISECOND"
    assert "SequenceNumber" not in ms["dynamodb"] and ms["tableName"] == "t"
    assert ms["eventSource"] == "aws:dynamodb" and ms["recordFormat"] == "application/json"
    micro = kds_change(record, table_name="t", precision="MICROSECOND")
    assert micro["dynamodb"]["ApproximateCreationDateTime"] == 1700000000123456
    with pytest.raises(ValueError, match=r"stream\.source"):
        KdsSettings(source="sqs")


@pytest.mark.slow
def test_the_kinesis_scenario_converges() -> None:
    from harness.runner import run_scenario
    from harness.scenario import load_scenario

    result = run_scenario(load_scenario("kinesis"))
    assert result.error is None
    assert result.outcomes[0].diff.converged, result.outcomes[0].diff.as_dict()
    # duplicates were delivered: more Kinesis records than the workload's writes
    assert result.stream_records > result.workload["writes"]
    assert any("KDS source" in note for note in result.notes)


@pytest.mark.slow
def test_chaos_on_kds_converges_and_finds_ordering_by_arrival(tmp_path: Path) -> None:
    """Six schedules on the KDS source (every fault kind but corrupted records), clean, then with
    the planted bug; seed 103 besides: a bulk cut off after a delete's tombstone once left the
    document (the retried delete was taken for a duplicate of its own tombstone)."""
    from harness.chaos import replay_recording, run_chaos

    logging.disable(logging.WARNING)
    try:
        clean = run_chaos(6, seed=200, target="mongoeco", shape_overrides={"source": "kinesis"})
        tombstone_first = run_chaos(1, seed=103, target="mongoeco",
                                    shape_overrides={"source": "kinesis"})
        planted = run_chaos(6, seed=200, target="mongoeco", plants=["arrival_order"],
                            recordings=tmp_path)
    finally:
        logging.disable(logging.NOTSET)
    for report in (clean, tombstone_first):
        assert report["diverged"] == report["regressions"] == report["lost_records"] == 0, \
            report["divergences"]
        assert report["resurrections"] == 0
    assert clean["records"] > 100 and clean["faults_injected"]
    assert planted["diverged"] + planted["regressions"] > 0
    # a failing KDS schedule's recording (its Kinesis records, per shard) replays into it again
    recording = planted["divergences"][0]["recording"]
    logging.disable(logging.WARNING)
    try:
        replayed = replay_recording(Path(recording), target="mongoeco")
    finally:
        logging.disable(logging.NOTSET)
    assert replayed.failed
