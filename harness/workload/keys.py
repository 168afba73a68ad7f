"""The key space of a workload: key ``i`` as a wire-format key, which writer owns it, and the key
distributions (uniform, zipf, sequential) that choose the next one."""

from __future__ import annotations

import bisect
import math
import random
import zlib
from collections.abc import Callable, Sequence

from harness.backends.base import TableSpec
from harness.dynamodb_values import AttributeValue
from harness.workload.spec import Item, KeyTuple, WorkloadSpec, key_tuple


class KeySpace:
    """Keys ``0 .. workload.keys - 1`` and the planner's model of the table (``state``: key index ->
    item). Holds the plan's one ``random.Random``: every draw, here and in subclasses, comes from it
    in plan order."""

    def __init__(self, spec: TableSpec, workload: WorkloadSpec) -> None:
        workload.validate()
        self.spec = spec
        self.w = workload
        self.table = spec.name
        self.rng = random.Random(workload.seed)
        self.zoo = workload.value_profile == "type_zoo"
        self.state: dict[int, Item] = {}
        self.index = 0
        self.seq = 0
        self.per_partition = max(1, round(math.sqrt(workload.keys))) if spec.sort_key else 1
        self._keys: dict[int, Item] = {}
        self._shards: dict[int, int] = {}
        self.zipf: list[float] = []
        if workload.key_distribution == "zipf":
            total = 0.0
            for rank in range(1, workload.keys + 1):
                total += rank ** -workload.zipf_s
                self.zipf.append(total)

    def key(self, i: int) -> Item:
        if i not in self._keys:
            if self.spec.sort_key:
                partition, sort = divmod(i, self.per_partition)
                key = {
                    self.spec.partition_key[0]: self._key_value(self.spec.partition_key[1], partition, "p"),
                    self.spec.sort_key[0]: self._key_value(self.spec.sort_key[1], sort, "s"),
                }
            else:
                key = {self.spec.partition_key[0]: self._key_value(self.spec.partition_key[1], i, "k")}
            self._keys[i] = key
        return self._keys[i]

    def _key_value(self, kind: str, n: int, prefix: str) -> AttributeValue:
        if kind == "N":
            return {"N": str(n)}
        if kind == "B":
            return {"B": b"\x00" + n.to_bytes(4, "big") + b"\xff"}
        if self.zoo:
            return {"S": f"{prefix}{n:06d}-ключ✓"}
        return {"S": f"{prefix}{n:06d}"}

    def ktuple(self, i: int) -> KeyTuple:
        return key_tuple(self.spec, self.key(i))

    def shard(self, i: int) -> int:
        if self.w.writers == 1:
            return 0
        if i not in self._shards:
            self._shards[i] = zlib.crc32(repr(self.ktuple(i)).encode()) % self.w.writers
        return self._shards[i]

    def draw(self) -> int:
        distribution = self.w.key_distribution
        if distribution == "sequential":
            i = self.seq % self.w.keys
            self.seq += 1
            return i
        if distribution == "zipf":
            at = bisect.bisect_left(self.zipf, self.rng.random() * self.zipf[-1])
            return min(at, self.w.keys - 1)
        return self.rng.randrange(self.w.keys)

    def pick(
        self, accept: Callable[[int], bool], shard: int | None = None, existing: bool = False
    ) -> int | None:
        """A key by the distribution that ``accept``s, else the next one that does (or None).

        ``existing``: ``accept`` is only true for keys in the model (scan only those).
        """

        def ok(i: int) -> bool:
            return (shard is None or self.shard(i) == shard) and accept(i)

        i = 0
        for _ in range(16):
            i = self.draw()
            if ok(i):
                return i
        if existing:
            pool: Sequence[int] = sorted(self.state)
            start = bisect.bisect_right(pool, i)
        else:
            pool = range(self.w.keys)
            start = i + 1
        for step in range(len(pool)):
            j = pool[(start + step) % len(pool)]
            if ok(j):
                return j
        return None

    def exists(self, i: int) -> bool:
        return i in self.state

    def missing(self, i: int) -> bool:
        return i not in self.state
