"""Replication lag: time of the source write -> the delivery that made it visible in the target."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def key_fingerprint(keys: Mapping[str, Any]) -> str:
    """A canonical text for a record's or item's key attributes (wire format, B as hex)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return {"hex": bytes(value).hex()}
        if isinstance(value, Mapping):
            if set(value) == {"B"} and isinstance(value["B"], str):
                import base64

                return {"B": {"hex": base64.b64decode(value["B"]).hex()}}
            return {k: plain(v) for k, v in sorted(value.items())}
        return value

    return json.dumps(plain(dict(keys)), sort_keys=True)


@dataclass
class LagStats:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (completed_at, lag_s)

    def percentile(self, p: float) -> float | None:
        if not self.samples:
            return None
        values = sorted(lag for _, lag in self.samples)
        index = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
        return values[index]

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": len(self.samples),
            "p50_s": self.percentile(50),
            "p95_s": self.percentile(95),
            "p99_s": self.percentile(99),
            "max_s": max((lag for _, lag in self.samples), default=None),
        }


def measure(
    writes: Iterable[tuple[float, str]], deliveries: Iterable[tuple[float, str]]
) -> LagStats:
    """Lag of each source write: the first completed delivery of its key after it, minus its time.

    ``writes`` are (time, key fingerprint) of source writes, ``deliveries`` (time, key fingerprint)
    of records whose batch completed, on the same wall clock. Records cannot be matched to writes
    one to one (moto emits extra records, DynamoDB Local none for no-op writes), so this is the
    time until a change of that key written at or after the write reached the target.
    """
    by_key: dict[str, list[float]] = {}
    for completed, key in deliveries:
        by_key.setdefault(key, []).append(completed)
    for times in by_key.values():
        times.sort()
    stats = LagStats()
    for written, key in writes:
        times = by_key.get(key)
        if not times:
            continue
        position = bisect.bisect_left(times, written)
        if position < len(times):
            stats.samples.append((times[position], times[position] - written))
    stats.samples.sort()
    return stats


def plot(stats: LagStats, path: str, title: str) -> None:
    """Lag over time as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 3.5))
    if stats.samples:
        start = stats.samples[0][0]
        axes.plot([t - start for t, _ in stats.samples], [lag * 1000 for _, lag in stats.samples],
                  ".", markersize=3)
    axes.set_xlabel("time since first delivery (s)")
    axes.set_ylabel("lag (ms)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
