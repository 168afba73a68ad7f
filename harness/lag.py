"""Replication lag: time of the source write -> the delivery that made it visible in the target."""

from __future__ import annotations

import bisect
import json
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.histogram import Histogram


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


#: points kept for the lag-over-time plot; beyond it every other point is dropped (and then only
#: every 2nd, 4th, ... new one kept), so the plot spans the whole run in bounded memory
SERIES_LIMIT = 20_000


class LagStats:
    """Lag samples: percentiles from a streaming histogram (all samples), and a bounded, evenly
    thinned series of ``(completed_at, lag_s)`` for the plot."""

    def __init__(self, series_limit: int = SERIES_LIMIT) -> None:
        self.histogram = Histogram()
        self.series_limit = max(2, series_limit)
        self._series: list[tuple[float, float]] = []
        self._stride = 1
        self._seen = 0

    def add(self, completed_at: float, lag_s: float) -> None:
        self.histogram.add(lag_s)
        if self._seen % self._stride == 0:
            self._series.append((completed_at, lag_s))
            if len(self._series) >= self.series_limit:
                del self._series[1::2]
                self._stride *= 2
        self._seen += 1

    @property
    def count(self) -> int:
        return self.histogram.count

    @property
    def samples(self) -> list[tuple[float, float]]:
        """The plotted series, in completion order (all samples while under the limit)."""
        return sorted(self._series)

    def percentile(self, p: float) -> float | None:
        return self.histogram.percentile(p)

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.count,
            "p50_s": self.percentile(50),
            "p90_s": self.percentile(90),
            "p95_s": self.percentile(95),
            "p99_s": self.percentile(99),
            "max_s": self.histogram.max,
        }


class DeliveryTimes:
    """Completion times of delivered records, per key fingerprint: 8 bytes a delivery (the record
    itself is not kept). Its :meth:`on_complete` is an ``EventSourceMapping`` ``on_complete``."""

    def __init__(self) -> None:
        self.by_key: dict[str, array[float]] = {}

    def add(self, completed_at: float, key: str) -> None:
        times = self.by_key.get(key)
        if times is None:
            times = self.by_key[key] = array("d")
        times.append(completed_at)

    def on_complete(self, completed_at: float, records: Sequence[Mapping[str, Any]]) -> None:
        from harness.kinesis import keys_of

        for record in records:
            keys = keys_of(record)  # a DynamoDB Streams record's, or a Kinesis record's change's
            if isinstance(keys, Mapping):
                self.add(completed_at, key_fingerprint(keys))

    def __len__(self) -> int:
        return sum(len(times) for times in self.by_key.values())


def measure(
    writes: Iterable[tuple[float, str]],
    deliveries: Iterable[tuple[float, str]] | DeliveryTimes,
    *,
    series_limit: int = SERIES_LIMIT,
) -> LagStats:
    """Lag of each source write: the first completed delivery of its key after it, minus its time.

    ``writes`` are (time, key fingerprint) of source writes, ``deliveries`` (time, key fingerprint)
    of records whose batch completed (or a :class:`DeliveryTimes`), on the same wall clock. Records
    cannot be matched to writes one to one (moto emits extra records, DynamoDB Local none for
    no-op writes), so this is the time until a change of that key written at or after the write
    reached the target.
    """
    if not isinstance(deliveries, DeliveryTimes):
        collected = DeliveryTimes()
        for completed, key in deliveries:
            collected.add(completed, key)
        deliveries = collected
    by_key = {key: sorted(times) for key, times in deliveries.by_key.items()}
    stats = LagStats(series_limit)
    for written, key in writes:
        times = by_key.get(key)
        if not times:
            continue
        position = bisect.bisect_left(times, written)
        if position < len(times):
            stats.add(times[position], times[position] - written)
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
                  ".", markersize=3, label=f"lag ({stats.count:,} writes)")
        for p, style in ((50, "--"), (99, ":")):
            value = stats.percentile(p)
            if value is not None:
                axes.axhline(value * 1000, color="red", linestyle=style, linewidth=1,
                             label=f"p{p} {value * 1000:,.0f} ms")
        axes.legend(loc="upper left", fontsize=8)
    axes.set_xlabel("time since first delivery (s)")
    axes.set_ylabel("lag (ms)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
