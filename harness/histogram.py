"""Streaming percentiles for the harness's reports: a DDSketch, memory bounded by the value range.

A run of 50,000 events must not keep 50,000 samples to print p50/p99 (issue 14, part 4). DDSketch
(Masson, Rim & Lee, "DDSketch: A Fast and Fully-Mergeable Quantile Sketch with Relative-Error
Guarantees", VLDB 2019; the ``ddsketch`` package) answers any quantile within a stated *relative*
error of the exact sample quantile, with a number of buckets that grows with log(max/min), not
with the number of values.
"""

from __future__ import annotations

from typing import Any

from ddsketch import DDSketch

__all__ = ["RELATIVE_ACCURACY", "Histogram"]

#: a reported quantile q' of a true quantile q satisfies |q' - q| <= RELATIVE_ACCURACY * q
RELATIVE_ACCURACY = 0.01


class Histogram:
    """Values (seconds, sizes) in; count, sum, min, max exact; percentiles within 1 %."""

    def __init__(self, relative_accuracy: float = RELATIVE_ACCURACY) -> None:
        self.relative_accuracy = relative_accuracy
        self._sketch = DDSketch(relative_accuracy)
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value: float) -> None:
        self._sketch.add(value)
        self.count += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        self._sketch.merge(other._sketch)
        self.count += other.count
        self.total += other.total
        for name, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else pick(mine, theirs))

    def percentile(self, p: float) -> float | None:
        """The p-th percentile (0..100), None when empty; clamped to the exact min and max."""
        if self.count == 0:
            return None
        assert self.min is not None and self.max is not None
        if p >= 100:
            return self.max
        if p <= 0:
            return self.min
        value = self._sketch.get_quantile_value(p / 100)
        assert value is not None
        return float(min(max(value, self.min), self.max))

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def as_dict(self, *, scale: float = 1.0, digits: int = 6) -> dict[str, Any]:
        def out(value: float | None) -> float | None:
            return None if value is None else round(value * scale, digits)

        return {
            "count": self.count,
            "mean": out(self.mean),
            "p50": out(self.percentile(50)),
            "p90": out(self.percentile(90)),
            "p99": out(self.percentile(99)),
            "max": out(self.max),
        }
