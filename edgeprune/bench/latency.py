"""Latency of runners on a fixed batch: warm-up, then timed iterations; percentiles, mean and throughput.

Several runners are timed in alternating rounds (`measure_interleaved`), so that a burst of load elsewhere on a
shared machine slows each of them alike and their ratio (a speed-up) stays fair.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Run = Callable[[np.ndarray], Any]


def _stats(times_ms: list[float], batch_size: int) -> dict[str, float]:
    t = np.asarray(times_ms)
    return {
        "p50": float(np.percentile(t, 50)),
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
        "mean": float(t.mean()),
        "iterations": len(times_ms),
        "throughput_ips": float(batch_size / (np.median(t) / 1e3)),
    }


def _timed(run: Run, batch: np.ndarray, iterations: int, into: list[float]) -> None:
    for _ in range(iterations):
        start = time.perf_counter()
        run(batch)
        into.append((time.perf_counter() - start) * 1e3)


def measure_latency(run: Run, batch: np.ndarray, *, warmup: int = 5, iterations: int = 30) -> dict[str, float]:
    return measure_interleaved({"": run}, batch, warmup=warmup, iterations=iterations, rounds=1)[""]


def measure_interleaved(
    runs: dict[str, Run], batch: np.ndarray, *, warmup: int = 5, iterations: int = 30, rounds: int = 5
) -> dict[str, dict[str, float]]:
    """`iterations` of each runner (rounded up to whole rounds), in `rounds` rounds that alternate between them."""
    for run in runs.values():
        for _ in range(warmup):
            run(batch)
    per_round = max(1, math.ceil(iterations / rounds))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            _timed(run, batch, per_round, times[name])
    return {name: _stats(t, len(batch)) for name, t in times.items()}
