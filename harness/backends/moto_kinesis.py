"""Kinesis resharding and retention as AWS does them, on moto's Kinesis.

moto 5.2's Kinesis differs from AWS in two ways that matter to a reader of a resharded stream
(measured on moto 5.2.6, ``moto/kinesis/models.py``):

* ``Stream.get_shard_for_key`` picks the first shard whose hash range holds the key, closed or
  not, so after ``SplitShard`` every record still goes to the closed parent; AWS writes only to
  open shards ("After the reshard ... data records are written to the child shards",
  *Resharding a stream*).
* ``SplitShard`` and ``MergeShards`` move the parents' records into the children (with new
  sequence numbers); AWS leaves them in the parent until the retention period removes them, which
  is why a consumer reads the parent to its end before the children.

Inside :class:`KinesisResharding` moto does what AWS does: only open shards take records and a
reshard leaves the parents' records where they are. :meth:`KinesisResharding.trim` drops a
shard's oldest records, as the retention period would (Kinesis then starts an iterator after a
trimmed position at the oldest record left, silently). It reaches moto's backend, so it works
where moto's state lives in this process (the in-process ``moto`` source, ``moto-server``).
"""

from __future__ import annotations

from typing import Any

from harness.backends.moto_source import MotoPatches


class KinesisResharding(MotoPatches):
    """moto's Kinesis with AWS's resharding; see the module docstring."""

    def __enter__(self) -> KinesisResharding:
        from moto.kinesis import models
        from moto.utilities.utils import md5_hash

        original_split = models.Stream.split_shard
        original_merge = models.Stream.merge_shards

        def get_shard_for_key(stream: Any, partition_key: str, explicit_hash_key: str) -> Any:
            if explicit_hash_key:
                int_key = int(explicit_hash_key)
            else:
                int_key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
            for shard in stream.shards.values():
                if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
                    return shard
            return None

        def keeping(shards: list[Any], reshard: Any) -> None:
            held = [shard.records for shard in shards]
            for shard in shards:
                shard.records = type(shard.records)()  # nothing for moto to move
            try:
                reshard()
            finally:
                for shard, records in zip(shards, held, strict=True):
                    shard.records = records

        def split_shard(stream: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
            parent = stream.shards.get(shard_to_split)
            keeping([parent] if parent is not None else [],
                    lambda: original_split(stream, shard_to_split, new_starting_hash_key))

        def merge_shards(stream: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
            parents = [stream.shards[s] for s in (shard_to_merge, adjacent_shard_to_merge)
                       if s in stream.shards]
            keeping(parents, lambda: original_merge(stream, shard_to_merge,
                                                    adjacent_shard_to_merge))

        self._patch((models.Stream, "get_shard_for_key", get_shard_for_key),
                    (models.Stream, "split_shard", split_shard),
                    (models.Stream, "merge_shards", merge_shards))
        return self

    def _stream(self, stream_name: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.kinesis.models import kinesis_backends

        backend = kinesis_backends[self.account_id or DEFAULT_ACCOUNT_ID][self.region]
        return backend.describe_stream(stream_arn=None, stream_name=stream_name)

    def trim(self, stream_name: str, shard_id: str, through: int) -> int:
        """Drop the shard's records up to sequence number ``through``, as the retention period
        would; returns how many were dropped."""
        shard = self._stream(stream_name).get_shard(shard_id)
        gone = [number for number in shard.records if number <= through]
        for number in gone:
            del shard.records[number]
        return len(gone)
