"""Latency of a runner on a fixed batch: warm-up, then timed iterations; percentiles, mean and throughput."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def measure_latency(
    run: Callable[[np.ndarray], Any], batch: np.ndarray, *, warmup: int = 5, iterations: int = 30
) -> dict[str, float]:
    for _ in range(warmup):
        run(batch)
    times_ms = []
    for _ in range(iterations):
        start = time.perf_counter()
        run(batch)
        times_ms.append((time.perf_counter() - start) * 1e3)
    t = np.asarray(times_ms)
    return {
        "p50": float(np.percentile(t, 50)),
        "p90": float(np.percentile(t, 90)),
        "p99": float(np.percentile(t, 99)),
        "mean": float(t.mean()),
        "iterations": iterations,
        "throughput_ips": float(len(batch) / (np.median(t) / 1e3)),
    }
