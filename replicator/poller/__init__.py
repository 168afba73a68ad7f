"""The standalone poller (``replicator run``): reads a table's stream shard by shard and applies it
through the core, with checkpoints in MongoDB (docs/poller.md).

- :mod:`.loop` -- :class:`Poller`, the loop: shards in parent-before-child order, retries with
  backoff, checkpoints after each applied batch;
- :mod:`.streams` -- the shard iterators (``GetShardIterator`` / ``GetRecords``);
- :mod:`.checkpoints` -- a shard's position, stored in MongoDB;
- :mod:`.resume` -- whether the checkpoints are still inside the stream's 24 hours;
- :mod:`.resync` -- rebuilding the collection from a table scan when they are not;
- :mod:`.tables` -- ``DescribeTable`` into :class:`TableInfo`.
"""

from replicator.poller.loop import Poller, PollerStats, ShardProgress

__all__ = ["Poller", "PollerStats", "ShardProgress"]
