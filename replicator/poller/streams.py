"""Reading a DynamoDB stream the way a consumer must: every shard, in lineage order, nothing lost.

``StreamReader`` works with any boto3 ``dynamodbstreams`` client (moto, DynamoDB Local, AWS) and
with fakes that answer the same three calls (DescribeStream, GetShardIterator, GetRecords).

What it guarantees:

* Shards are listed with DescribeStream paginated on ``ExclusiveStartShardId`` and put in lineage
  order: a parent before its children, siblings in the order DescribeStream gives them.
* A child shard is read only once its parent is exhausted, i.e. after a GetRecords page without
  ``NextShardIterator`` (the records of that last page are kept). A parent that DescribeStream no
  longer lists (trimmed after 24 h) does not hold its children back.
* Each shard's position is the current ``NextShardIterator`` plus the sequence number of the last
  record returned. An iterator that expired (``ExpiredIteratorException``) or points at trimmed
  data (``TrimmedDataAccessException``) is re-acquired ``AFTER_SEQUENCE_NUMBER`` that last record,
  or ``TRIM_HORIZON`` when none was seen, so no record is returned twice or skipped.
* ``LATEST`` applies to the shards open when the reader is made (their iterators are taken in the
  constructor, so records written after construction are not missed) and shards closed then are
  skipped; shards that appear later are read from ``TRIM_HORIZON``, as the KCL does.
* Records are returned as a Lambda event carries them (``B`` as base64 text,
  ``ApproximateCreationDateTime`` as epoch seconds): GetRecords bodies are read with
  ``json.loads``, not botocore's parser (replicator/aws_json.py says why).
* Resuming (the standalone poller's checkpoints): ``positions={shard_id: sequence}`` starts those
  shards ``AFTER_SEQUENCE_NUMBER`` the sequence (under ``LATEST`` too); ``finished`` names shards
  already read to their end (they are not read again). ``on_trimmed(state, sequence)`` is called
  when a position fell off the stream (``TrimmedDataAccessException`` on ``AFTER_SEQUENCE_NUMBER``),
  before the reader goes on at ``TRIM_HORIZON``; it may raise to stop the reader instead.
* A position without a sequence number (an iterator at ``LATEST``, or at ``TRIM_HORIZON`` before
  any record) that expired or hit trimmed data cannot be resumed where it was: it is re-acquired
  at ``TRIM_HORIZON``, which starts after whatever was trimmed since. ``on_position_lost(state)``
  is called first (``state.positioned_at``: when the first iterator was taken, by ``now``); it may
  raise to stop the reader (the poller does when that is older than the stream's retention).

A sequence range of one shard (``replicator redrive``: the range an on-failure destination
message names) is read with :meth:`StreamReader.read_range`: GetShardIterator
``AT_SEQUENCE_NUMBER`` its start, GetRecords until its end; a range the stream no longer holds in
full raises :class:`replicator.errors.RangeUnavailable`.

Calls are bounded: ``poll`` reads each readable shard until a page comes back empty (at most
``max_pages`` pages), DescribeStream is called on the first poll, when a shard has closed and every
``refresh_interval`` seconds, and an empty poll is followed by at least ``poll_interval`` seconds
before the next one sends anything.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from replicator import aws_json
from replicator.errors import RangeUnavailable, StreamReadTimeout

Record = dict[str, Any]
StartingPosition = Literal["TRIM_HORIZON", "LATEST"]

#: GetRecords / GetShardIterator errors that mean "get a new iterator at the same place".
REACQUIRE_ERRORS = frozenset({"ExpiredIteratorException", "TrimmedDataAccessException"})


@dataclass
class ShardState:
    """Where the reader is in one shard."""

    shard_id: str
    parent_id: str | None
    start: str  # the iterator type for the first GetShardIterator: TRIM_HORIZON or LATEST
    iterator: str | None = None
    last_sequence: str | None = None
    exhausted: bool = False  # a page without NextShardIterator was read (or skipped under LATEST)
    acquired: bool = False  # an iterator was handed out for this shard at least once
    listed: bool = True  # in the latest DescribeStream answer
    reacquired: int = 0  # iterators re-acquired after expiry or trimming
    trimmed: list[str] = field(default_factory=list)  # positions that fell off the stream
    acquired_at: float = 0.0  # when the current iterator came from GetShardIterator
    positioned_at: datetime | None = None  # wall time of the first iterator (``now``)
    #: Kinesis: the second parent of a shard made by MergeShards (DynamoDB Streams: never set)
    adjacent_parent_id: str | None = None
    #: the listing gave the shard an EndingSequenceNumber (it is closed)
    closed: bool = False


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (or anything shaped like it)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def lineage_order(shards: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shards with every parent before its children, otherwise as close to the given order as can be.

    Each step takes, of the shards whose parents are placed (or not among ``shards``: a root), the
    one listed first; a Kinesis shard made by MergeShards waits for both parents
    (``ParentShardId`` and ``AdjacentParentShardId``). Shards caught in a cycle (never seen from
    a real stream) come last, in the given order.
    """
    listed = list(shards)
    index = {shard["ShardId"]: position for position, shard in enumerate(listed)}
    children: dict[str, list[int]] = {}
    ready: list[int] = []
    waiting: dict[int, int] = {}  # position -> parents not placed yet
    for position, shard in enumerate(listed):
        # Kinesis: a shard made by MergeShards has two parents (AdjacentParentShardId too).
        parents: set[str] = {
            parent for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId"))
            if parent is not None and parent in index and parent != shard["ShardId"]}
        if not parents:
            ready.append(position)
        else:
            waiting[position] = len(parents)
            for parent in parents:
                children.setdefault(parent, []).append(position)
    heapq.heapify(ready)
    ordered: list[dict[str, Any]] = []
    placed: set[int] = set()
    while ready:
        position = heapq.heappop(ready)
        if position in placed:  # a repeated shard id
            continue
        placed.add(position)
        ordered.append(listed[position])
        for child in children.get(listed[position]["ShardId"], []):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    ordered.extend(shard for position, shard in enumerate(listed) if position not in placed)
    return ordered


class StreamReader:
    """Reads every shard of one stream in lineage order; see the module docstring."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        *,
        starting_position: StartingPosition = "TRIM_HORIZON",
        limit: int = 1000,
        max_pages: int = 100,
        poll_interval: float = 0.05,
        refresh_interval: float = 5.0,
        max_reacquire: int = 5,
        idle_reacquire_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        positions: Mapping[str, str] | None = None,
        finished: Iterable[str] = (),
        on_trimmed: Callable[[ShardState, str], None] | None = None,
        on_position_lost: Callable[[ShardState], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"starting_position must be TRIM_HORIZON or LATEST, not {starting_position!r}")
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be 1..1000 (DynamoDB Local refuses more), not {limit}")
        self.client = streams_client
        self.stream_arn = stream_arn
        self.starting_position = starting_position
        self.limit = limit
        self.max_pages = max_pages
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.max_reacquire = max_reacquire
        self.idle_reacquire_s = idle_reacquire_s
        self._sleep = sleep
        self._clock = clock
        self._positions = dict(positions or {})
        self._finished = frozenset(finished)
        self.on_trimmed = on_trimmed
        self.on_position_lost = on_position_lost
        self._now = now
        self.state: dict[str, ShardState] = {}
        self._order: list[str] = []
        self._discovered_at: float | None = None
        self._rediscover = True
        self._last_empty_poll: float | None = None
        #: the shards the last :meth:`poll` read without error (with or without new records)
        self.last_polled: tuple[str, ...] = ()
        self.calls: dict[str, int] = {"DescribeStream": 0, "GetShardIterator": 0, "GetRecords": 0}
        if starting_position == "LATEST":
            # Take the positions now: a record written between construction and the first poll
            # must be read.
            self._discover()
            for shard_id in self._order:
                state = self.state[shard_id]
                if not state.exhausted and state.last_sequence is None:
                    state.iterator = self._get_iterator(shard_id, "LATEST")
                    state.acquired = True
                    state.positioned_at = self._now()

    # -- listing -----------------------------------------------------------------------------------
    def _describe_all(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamArn": self.stream_arn}
        seen: set[str] = set()
        while True:
            self.calls["DescribeStream"] += 1
            description = self.client.describe_stream(**request)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            if last in seen:
                raise RuntimeError(f"DescribeStream pagination loops at shard {last!r}")
            seen.add(last)
            request["ExclusiveStartShardId"] = last
        unique: dict[str, dict[str, Any]] = {}
        for shard in shards:  # a shard repeated across pages counts once
            unique.setdefault(shard["ShardId"], shard)
        return list(unique.values())

    def shards(self) -> list[dict[str, Any]]:
        """Every shard DescribeStream lists now (all pages), parents before children."""
        return lineage_order(self._describe_all())

    def _discover(self) -> None:
        first = self._discovered_at is None
        ordered = self.shards()
        for shard in ordered:
            shard_id = shard["ShardId"]
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            if shard_id in self.state:
                self.state[shard_id].listed = True
                self.state[shard_id].closed = closed
                continue
            state = ShardState(shard_id, shard.get("ParentShardId"), start="TRIM_HORIZON",
                               adjacent_parent_id=shard.get("AdjacentParentShardId"),
                               closed=closed)
            state.last_sequence = self._positions.get(shard_id)
            if shard_id in self._finished:
                state.exhausted = True
            elif first and self.starting_position == "LATEST" and state.last_sequence is None:
                state.start = "LATEST"
                if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                    state.exhausted = True  # closed before we started: history, not ours to read
            self.state[shard_id] = state
        listed = {shard["ShardId"] for shard in ordered}
        for shard_id, state in self.state.items():
            state.listed = shard_id in listed
        # Shards we know but DescribeStream dropped keep their place (they may hold our position).
        known = [{"ShardId": s.shard_id, "ParentShardId": s.parent_id,
                  "AdjacentParentShardId": s.adjacent_parent_id} for s in self.state.values()]
        self._order = [shard["ShardId"] for shard in lineage_order(
            [*ordered, *(k for k in known if k["ShardId"] not in listed)]
        )]
        self._discovered_at = self._clock()
        self._rediscover = False

    # -- iterators ---------------------------------------------------------------------------------
    def _get_iterator(self, shard_id: str, kind: str, sequence: str | None = None) -> str | None:
        request: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id,
                                   "ShardIteratorType": kind}
        if sequence is not None:
            request["SequenceNumber"] = sequence
        self.calls["GetShardIterator"] += 1
        iterator = self.client.get_shard_iterator(**request).get("ShardIterator")
        return str(iterator) if iterator else None

    def _get_page(self, state: ShardState) -> dict[str, Any]:
        """One GetRecords page of the shard at ``state.iterator``: ``Records`` in the shape the
        reader hands out, ``NextShardIterator`` (None at a closed shard's end)."""
        return aws_json.get_records(self.client, ShardIterator=state.iterator, Limit=self.limit)

    def sequence_of(self, record: Record) -> str:
        """A record's sequence number (DynamoDB Streams: ``dynamodb.SequenceNumber``)."""
        return str(record["dynamodb"]["SequenceNumber"])

    def _at_end(self, state: ShardState, page: Mapping[str, Any]) -> bool:
        """A page that ends the shard although it carries a ``NextShardIterator`` (DynamoDB
        Streams ends a shard only by leaving it out)."""
        return False

    def _resume_iterator(self, state: ShardState) -> str | None:
        """An iterator just after the last record seen; else at the shard's start position (first
        time) or at TRIM_HORIZON (re-acquired: an expired LATEST cannot say where it was)."""
        if state.last_sequence is None:
            if state.acquired:
                if self.on_position_lost is not None:
                    self.on_position_lost(state)
            else:
                state.positioned_at = self._now()
            kind = "TRIM_HORIZON" if state.acquired else state.start
            state.acquired = True
            return self._get_iterator(state.shard_id, kind)
        state.acquired = True
        try:
            return self._get_iterator(state.shard_id, "AFTER_SEQUENCE_NUMBER", state.last_sequence)
        except Exception as error:
            if error_code(error) != "TrimmedDataAccessException":
                raise
            # The records after our position are gone (older than the retention period): nothing
            # to do but go on from the oldest record still there, and say so.
            state.trimmed.append(state.last_sequence)
            if self.on_trimmed is not None:
                self.on_trimmed(state, state.last_sequence)
            return self._get_iterator(state.shard_id, "TRIM_HORIZON")

    # -- reading -----------------------------------------------------------------------------------
    def _readable(self, state: ShardState) -> bool:
        if state.exhausted:
            return False
        for parent_id in (state.parent_id, state.adjacent_parent_id):
            parent = self.state.get(parent_id) if parent_id else None
            if parent is not None and not parent.exhausted and parent.listed:
                return False
        return True

    def _read_shard(self, state: ShardState) -> list[Record]:
        """Pages of one shard until an empty page, the shard's end or ``max_pages``."""
        records: list[Record] = []
        retries = 0
        pages = 0
        while pages < self.max_pages:
            if state.iterator is None:
                state.iterator = self._resume_iterator(state)
                state.acquired_at = self._clock()
                if state.iterator is None:  # nothing to read from (shard gone)
                    state.exhausted = True
                    break
            try:
                self.calls["GetRecords"] += 1
                asked = self._now()
                page = self._get_page(state)
            except Exception as error:
                if error_code(error) not in REACQUIRE_ERRORS:
                    raise
                retries += 1
                state.reacquired += 1
                if retries > self.max_reacquire:
                    raise RuntimeError(
                        f"shard {state.shard_id}: {retries} iterators in a row failed "
                        f"({error_code(error)})"
                    ) from error
                state.iterator = None  # re-acquired after the last record seen, on the next turn
                continue
            pages += 1
            retries = 0
            batch = page.get("Records") or []
            if state.last_sequence is None:
                # Still no record: the stream held nothing after this position when asked, so a
                # TRIM_HORIZON re-acquired within the retention from now loses nothing.
                state.positioned_at = asked
            records.extend(batch)
            if batch:
                state.last_sequence = self.sequence_of(batch[-1])
            next_iterator = page.get("NextShardIterator")
            if not next_iterator or self._at_end(state, page):
                # closed shard, read to its end (this page's records are kept)
                state.iterator = None
                state.exhausted = True
                self._rediscover = True  # its children may be listed by now
                break
            state.iterator = next_iterator
            if not batch:
                # An idle shard's iterator is renewed from the last record seen now and then:
                # moto pins an iterator to its table object, which it replaces on a failed
                # conditional write (the iterator then never sees a record again), and real
                # iterators expire after 15 minutes anyway. A fresh iterator loses nothing.
                renewable = state.last_sequence is not None or state.start == "TRIM_HORIZON"
                if renewable and self._clock() - state.acquired_at >= self.idle_reacquire_s:
                    state.iterator = None
                break
        return records

    def poll(self) -> list[tuple[str, list[Record]]]:
        """New records since the last call, as ``(shard_id, records)`` in lineage order.

        Only shards with new records appear. A shard that closes during the call lets its
        children be read in the same call.
        """
        now = self._clock()
        if self._last_empty_poll is not None:
            wait = self.poll_interval - (now - self._last_empty_poll)
            if wait > 0:
                self._sleep(wait)
        due = self._discovered_at is None or (self._clock() - self._discovered_at
                                              >= self.refresh_interval)
        if self._rediscover or due:
            self._discover()
        fresh: dict[str, list[Record]] = {}
        visited: set[str] = set()
        while True:
            turn = [shard_id for shard_id in self._order
                    if shard_id not in visited and self._readable(self.state[shard_id])]
            if not turn:
                break
            for shard_id in turn:
                visited.add(shard_id)
                records = self._read_shard(self.state[shard_id])
                if records:
                    fresh.setdefault(shard_id, []).extend(records)
            if self._rediscover:
                self._discover()
        rank = {shard_id: index for index, shard_id in enumerate(self._order)}
        result = sorted(fresh.items(), key=lambda item: rank.get(item[0], len(rank)))
        self._last_empty_poll = None if result else self._clock()
        self.last_polled = tuple(sorted(visited, key=lambda shard_id: rank.get(shard_id, len(rank))))
        return result

    def drain(self, idle_polls: int = 2, timeout: float = 60.0) -> dict[str, list[Record]]:
        """Poll until ``idle_polls`` polls in a row bring nothing; every record, per shard.

        Raises :class:`StreamReadTimeout` (with the records read so far) if records are still
        arriving after ``timeout`` seconds.
        """
        if idle_polls < 1:
            raise ValueError("idle_polls must be at least 1")
        deadline = self._clock() + timeout
        collected: dict[str, list[Record]] = {}
        idle = 0
        while idle < idle_polls:
            batch = self.poll()
            for shard_id, records in batch:
                collected.setdefault(shard_id, []).extend(records)
            idle = 0 if batch else idle + 1
            if idle < idle_polls and self._clock() > deadline:
                total = sum(len(records) for records in collected.values())
                raise StreamReadTimeout(
                    f"stream {self.stream_arn} still busy after {timeout:.0f} s ({total} records read)",
                    self._ordered(collected),
                )
        return self._ordered(collected)

    def _ordered(self, collected: dict[str, list[Record]]) -> dict[str, list[Record]]:
        rank = {shard_id: index for index, shard_id in enumerate(self._order)}
        return dict(sorted(collected.items(), key=lambda item: rank.get(item[0], len(rank))))

    # -- one range --------------------------------------------------------------------------------
    def read_range(self, shard_id: str, start: str, end: str, *,
                   max_empty_pages: int = 20) -> Iterator[list[Record]]:
        """The records of ``shard_id`` from sequence number ``start`` to ``end`` (both included),
        one GetRecords page at a time (at most ``limit`` records each; pages with nothing in the
        range are not yielded). Reading stops at the first record at or past ``end``.

        Raises :class:`RangeUnavailable` when the stream does not hold the whole range:
        GetShardIterator or GetRecords answers ``TrimmedDataAccessException`` (AWS: "read past
        the oldest stream record in a shard"), the first record read comes after ``start`` (the
        records before it were trimmed), ``ResourceNotFoundException`` (the shard or the stream
        is gone: shards are deleted 24 hours after they close), or the shard ends before ``end``.
        ``StreamReadTimeout`` after ``max_empty_pages`` empty pages in a row short of ``end``
        (an open shard answers empty pages while it has nothing new; the range's records were
        written before the message, so they cannot be still to come). An expired iterator is
        re-acquired ``AFTER_SEQUENCE_NUMBER`` the last record read (``max_reacquire`` times).
        """
        first, last = int(start), int(end)
        if last < first:
            raise ValueError(f"endSequenceNumber {end} is before startSequenceNumber {start}")

        def unavailable(reason: str) -> RangeUnavailable:
            return RangeUnavailable(reason, stream_arn=self.stream_arn, shard_id=shard_id,
                                    start=start, end=end)

        def acquire(kind: str, sequence: str) -> str | None:
            try:
                return self._get_iterator(shard_id, kind, sequence)
            except Exception as error:
                code = error_code(error)
                if code == "TrimmedDataAccessException":
                    raise unavailable(
                        f"SequenceNumber {sequence} of shard {shard_id} is older than the oldest "
                        f"record the stream holds (GetShardIterator {kind}: {code})") from None
                if code == "ResourceNotFoundException":
                    raise unavailable(f"shard {shard_id} or its stream is gone (GetShardIterator: "
                                      f"{code})") from None
                raise

        iterator = acquire("AT_SEQUENCE_NUMBER", start)
        seen: str | None = None  # the last record read
        empty = reacquired = 0
        while True:
            if iterator is None:
                raise unavailable(f"GetShardIterator gave no iterator for shard {shard_id}")
            try:
                self.calls["GetRecords"] += 1
                page = self._range_page(shard_id, iterator)
            except Exception as error:
                code = error_code(error)
                if code == "TrimmedDataAccessException":
                    raise unavailable(f"shard {shard_id}: GetRecords after SequenceNumber "
                                      f"{seen or start} reads trimmed data ({code})") from None
                if code != "ExpiredIteratorException":
                    raise
                reacquired += 1
                if reacquired > self.max_reacquire:
                    raise RuntimeError(f"shard {shard_id}: {reacquired} iterators in a row "
                                       f"expired") from error
                iterator = (acquire("AFTER_SEQUENCE_NUMBER", seen) if seen is not None
                            else acquire("AT_SEQUENCE_NUMBER", start))
                continue
            reacquired = 0
            records = page.get("Records") or []
            if records:
                empty = 0
                head = self.sequence_of(records[0])
                if seen is None and int(head) > first:
                    raise unavailable(
                        f"shard {shard_id}: the first record the stream still holds from "
                        f"SequenceNumber {start} is {head} (the records before it were trimmed)")
                seen = self.sequence_of(records[-1])
                kept = [record for record in records
                        if first <= int(self.sequence_of(record)) <= last]
                if kept:
                    yield kept
                if int(seen) >= last:
                    return
            else:
                empty += 1
            iterator = page.get("NextShardIterator")
            if not iterator:
                raise unavailable(f"shard {shard_id} ends at SequenceNumber {seen or '-'}, "
                                  f"before endSequenceNumber {end}")
            if empty >= max_empty_pages:
                raise StreamReadTimeout(
                    f"shard {shard_id}: {empty} empty GetRecords pages in a row after "
                    f"SequenceNumber {seen or start}, short of endSequenceNumber {end}", {})

    def _range_page(self, shard_id: str, iterator: str) -> dict[str, Any]:
        """One GetRecords page for :meth:`read_range`, its records in the shape the reader hands
        out."""
        return aws_json.get_records(self.client, ShardIterator=iterator, Limit=self.limit)

    # -- introspection -----------------------------------------------------------------------------
    def positions(self) -> dict[str, str | None]:
        """The last sequence number read per shard (``None``: nothing read yet)."""
        return {shard_id: self.state[shard_id].last_sequence for shard_id in self._order}

    def exhausted(self) -> list[str]:
        """Shards read to their end (closed), in lineage order."""
        return [shard_id for shard_id in self._order if self.state[shard_id].exhausted]
