"""Instructions the tombstones cost the client, counted by callgrind (immune to machine load).

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
        python benchmarks/bench_tombstones.py on|off BATCHES      # e.g. 5, then 25

Each run starts ``wire_responder.py`` (another process, not traced), builds the same fresh
100-record batches as ``bench_lambda.py`` and hands ``--batches`` of them to
``Replicator(collection, Settings(tombstones=...)).handle`` after one warm-up batch. The
difference between a run of 25 and a run of 5 batches, over the 2,000 events between them, is the
instructions per event in steady state (start-up cancels out); "on" minus "off" is what the
tombstone probe, the delete markers and the re-check after inserts cost. Comparing two revisions
of the code (same Python, same inputs) shows whether a change cut that cost. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import pymongo  # noqa: E402
from bench_lambda import lambda_batches  # noqa: E402
from bench_wire import responder  # noqa: E402

from replicator import Replicator, Settings  # noqa: E402


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "on"
    batches = int(argv[1]) if len(argv) > 1 else 20
    if mode not in ("on", "off"):
        raise SystemExit("usage: bench_tombstones.py on|off [batches]")
    texts = lambda_batches(batches + 1, 100)
    events = [json.loads(text) for text in texts]
    with responder(timeout=120) as port:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=60000)
        try:
            collection = client["bench"]["items"]
            replicator = Replicator(collection, Settings(tombstones=(mode == "on")))
            replicator.handle(events[0])  # warm-up: connection, the tombstone index
            for event in events[1:]:
                if replicator.handle(event) != {"batchItemFailures": []}:
                    raise SystemExit("a batch failed")
        finally:
            client.close()
    print(f"{mode}: {batches * 100} events after the warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
