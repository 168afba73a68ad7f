"""Every way a stream's records can reach the Replicator: cut into consecutive batches, and in
every delivery order (Kinesis may reorder within its window) -- for tests holding that the result
does not depend on the batching."""

from __future__ import annotations

import itertools
from typing import Any


def splits(records: list[Any]) -> list[list[list[Any]]]:
    """Every way of cutting ``records`` (in this order) into consecutive batches."""
    out = []
    for cuts in itertools.product([False, True], repeat=len(records) - 1):
        batches, current = [], [records[0]]
        for cut, record in zip(cuts, records[1:], strict=True):
            if cut:
                batches.append(current)
                current = []
            current.append(record)
        batches.append(current)
        out.append(batches)
    return out


def batchings(records: list[Any]) -> list[list[list[Any]]]:
    """Every order of ``records`` cut into batches in every way."""
    return [batches for order in itertools.permutations(records) for batches in splits(list(order))]
