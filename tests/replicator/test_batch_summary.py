"""The batch summary's fast paths (issue 21) give the reference's answers on any records.

``core._close`` takes the batch's first and last SequenceNumber with ``min``/``max`` and a C key
instead of sorting; ``core._newest_created`` converts only the newest epoch number. Both are
held here to the record-by-record reference on records of every shape: plain dicts, other
mappings, missing or odd fields, equal padded sequence numbers, out-of-range and NaN times,
datetimes as GetRecords gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from replicator import core
from replicator.events import pad_sequence_number
from replicator.writes import PlannedWrite
from support.fast_set import examples


class _Mapping(Mapping[str, Any]):
    """A mapping that is not a dict (the fast paths must hand it to the reference)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


sequences = st.one_of(
    st.sampled_from(["1", "01", "001", "2", "10", "+1", "-1", "", "9" * 41]),
    st.integers(0, 10**30).map(str),
)
times = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**13), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(), st.text(max_size=2),
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["SequenceNumber"] = draw(st.one_of(sequences, st.integers(), st.none(),
                                               st.lists(st.integers(), max_size=1)))
    if draw(st.booleans()):
        body["ApproximateCreationDateTime"] = draw(times)
    shape = draw(st.sampled_from(["dict", "mapping body", "mapping record", "no body", "list"]))
    if shape == "dict":
        return {"dynamodb": body}
    if shape == "mapping body":
        return {"dynamodb": _Mapping(body)}
    if shape == "mapping record":
        return _Mapping({"dynamodb": body})
    if shape == "no body":
        return {"dynamodb": draw(st.sampled_from([None, "x", [1]]))}
    return [body]


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(records(), max_size=12))
def test_sequence_range_is_the_sorted_ends(batch: list[Any]) -> None:
    reference = sorted((s for s in map(core._sequence_of_raw, batch) if s is not None),
                       key=pad_sequence_number)
    found = core._sequences_of(batch)
    assert found == [s for s in map(core._sequence_of_raw, batch) if s is not None]
    if reference:
        assert min(found, key=core._PADDED) is reference[0]
        assert max(reversed(found), key=core._PADDED) is reference[-1]


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(records(), max_size=12), st.data())
def test_newest_created_is_the_record_by_record_answer(batch: list[Any], data: st.DataObject
                                                       ) -> None:
    readable = sorted({s for s in map(core._sequence_of_raw, batch) if s is not None})
    applied = data.draw(st.lists(st.sampled_from(readable), unique=True) if readable
                        else st.just([]))
    writes = [PlannedWrite.delete({"_id": 1}, (s,)) for s in applied]
    expected = core._newest_created_each(batch, set(applied))
    assert core._newest_created(batch, writes) == expected


def test_newest_created_reads_epoch_seconds_and_datetimes_together() -> None:
    late = datetime(2030, 1, 1, tzinfo=timezone.utc)
    batch = [{"dynamodb": {"SequenceNumber": "1", "ApproximateCreationDateTime": 1_700_000_000}},
             {"dynamodb": {"SequenceNumber": "2", "ApproximateCreationDateTime": late}},
             {"dynamodb": {"SequenceNumber": "3", "ApproximateCreationDateTime": 1e300}}]
    writes = [PlannedWrite.delete({"_id": 1}, ("1", "2", "3"))]
    assert core._newest_created(batch, writes) == late
    assert core._newest_created(batch[:1], writes) == datetime.fromtimestamp(1_700_000_000,
                                                                            timezone.utc)
