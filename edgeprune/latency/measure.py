"""The p50 latency of torch models on a target, the way bench measures engines: export, build, time (several
models in alternating rounds, so that their ratio is one of the same moments)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from edgeprune.bench.latency import measure_interleaved
from edgeprune.errors import EdgepruneError
from edgeprune.export.engines import build_target, make_runner
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.tensorrt import tensorrt_available
from edgeprune.profiles import Profile
from edgeprune.prune.counting import input_size
from edgeprune.targets import Target

MIN_ITERATIONS, MAX_ITERATIONS, MIN_SECONDS = 30, 300, 2.0
ROUNDS = 5


def measurable(target: Target) -> bool:
    """Whether `target`'s engines can be built and run here (TensorRT engines need TensorRT)."""
    return not target.tensorrt_engine or tensorrt_available()


def check_measurable(target: Target) -> None:
    """Refuse at once a target whose engines cannot be built and run here."""
    if not measurable(target):
        raise EdgepruneError(
            f"latency tables for '{target.name}' are measured with TensorRT engines, and TensorRT is not installed "
            "here: build the table on the device (`edgeprune latency-table` there), then pass it with --latency-table"
        )


def measure_p50s(
    models: Sequence[nn.Module],
    target: Target,
    profile: Profile,
    batch: int,
    threads: int | None,
    timed_choices: bool = False,
) -> list[float]:
    """Median latency in ms of each model built for `target`: ROUNDS alternating rounds, each model timed for at
    least MIN_SECONDS and MIN_ITERATIONS in all (at most MAX_ITERATIONS), after a warm-up. With `timed_choices` each
    build times its variants (attention fused or not, ...) as `export` does; latency probes keep one choice for all."""
    images = np.random.default_rng(0).standard_normal((batch, 3, *input_size(models[0]))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as tmp, contextlib.ExitStack() as stack:
        runs = {}
        for i, model in enumerate(models):
            folder = Path(tmp) / str(i)
            folder.mkdir()
            source = folder / "probe.onnx"
            export_onnx(model, source)
            calibration = images if target.needs_calibration else None
            built = build_target(
                target,
                {"probe": source},
                {"probe": ""},
                folder,
                profile,
                calibration,
                None,
                ".",
                timed_choices=timed_choices,
            )
            entry = built["engines"]["probe"]
            if "bundle" in entry:
                check_measurable(target)
            runner = stack.enter_context(
                make_runner(target, folder / Path(entry["path"]).name, profile, threads, folder)
            )
            runs[str(i)] = runner.run
        slowest = 1e-4
        for run in runs.values():
            start = time.perf_counter()
            run(images)
            slowest = max(slowest, time.perf_counter() - start)
        iterations = int(min(MAX_ITERATIONS, max(MIN_ITERATIONS, MIN_SECONDS / slowest)))
        timed = measure_interleaved(runs, images, warmup=3, iterations=iterations, rounds=ROUNDS)
        return [timed[str(i)]["p50"] for i in range(len(models))]


def measure_p50(model: nn.Module, target: Target, profile: Profile, batch: int, threads: int | None) -> float:
    return measure_p50s([model], target, profile, batch, threads)[0]
