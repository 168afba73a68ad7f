"""Helpers shared by the benchmark scripts: medians of interleaved repetitions, calibration, and
the machine and package versions every report prints."""

from __future__ import annotations

import base64
import gc
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# -- small helpers -------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def interleaved(
    contenders: Mapping[str, Callable[[], Any]], reps: int, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Warm each contender up once, then time ``reps`` rounds A, B, C, A, B, C, ... with ``clock``.

    Interleaving spreads a noisy neighbour over every contender instead of one of them.
    """
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, run in contenders.items():
            gc.collect()
            start = clock()
            run()
            times[name].append(clock() - start)
    return times


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {
            name: package_version(name)
            for name in ("pymongo", "mongomock", "boto3", "botocore", "dynamodb-json", "simplejson", "rich")
        },
    }



def calibrate(run: Callable[[], Any], min_s: float) -> int:
    """How many passes of ``run`` take at least ``min_s`` (so one repetition is long enough)."""
    run()
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(min_s / once) + 1)


def synthetic_item(rng: random.Random, key: str) -> dict[str, Any]:
    """About ten attributes of mixed types, as a users table might hold them."""
    return {
        "id": {"S": key},
        "name": {"S": f"user {rng.randint(0, 10**6)} {rng.choice(['Ada', 'Émile', '李'])}"},
        "age": {"N": str(rng.randint(18, 90))},
        "balance": {"N": f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}"},
        "active": {"BOOL": rng.random() < 0.5},
        "tags": {"SS": rng.sample(["admin", "beta", "eu", "mobile", "premium", "us"], 3)},
        "scores": {"NS": [str(n) for n in rng.sample(range(101), 3)]},  # a set: no duplicates
        "address": {"M": {"city": {"S": rng.choice(["Rome", "Lyon", "Oslo"])},
                          "zip": {"S": f"{rng.randint(0, 99999):05d}"}}},
        "history": {"L": [{"N": str(rng.randint(0, 9))}, {"S": "login"}]},
        "avatar": {"B": base64.b64encode(rng.randbytes(16)).decode()},
        "deleted_at": {"NULL": True},
    }
