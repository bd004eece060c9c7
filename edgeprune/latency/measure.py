"""The p50 latency of a torch model on a target, the way bench measures engines: export, build, time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from torch import nn

from edgeprune.bench.latency import measure_latency
from edgeprune.errors import EdgepruneError
from edgeprune.export.engines import build_target, make_runner
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.tensorrt import tensorrt_available
from edgeprune.profiles import Profile
from edgeprune.prune.counting import input_size
from edgeprune.targets import Target

MIN_ITERATIONS, MAX_ITERATIONS, MIN_SECONDS = 30, 300, 2.0


def check_measurable(target: Target) -> None:
    """Refuse at once a target whose engines cannot be built and run here."""
    if target.tensorrt_engine and not tensorrt_available():
        raise EdgepruneError(
            f"latency tables for '{target.name}' are measured with TensorRT engines, and TensorRT is not installed "
            "here: build the table on the device (`edgeprune latency-table` there), then pass it with --latency-table"
        )


def measure_p50(model: nn.Module, target: Target, profile: Profile, batch: int, threads: int | None) -> float:
    """Median latency in ms of `model` built for `target`, as bench measures it: iterations for at least
    MIN_SECONDS and MIN_ITERATIONS (at most MAX_ITERATIONS) after a warm-up."""
    images = np.random.default_rng(0).standard_normal((batch, 3, *input_size(model))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as tmp:
        folder = Path(tmp)
        source = folder / "probe.onnx"
        export_onnx(model, source)
        calibration = images if target.needs_calibration else None
        built = build_target(target, {"probe": source}, {"probe": ""}, folder, profile, calibration, None, ".")
        entry = built["engines"]["probe"]
        if "bundle" in entry:
            check_measurable(target)
        engine = folder / Path(entry["path"]).name
        with make_runner(target, engine, profile, threads, folder) as runner:
            start = time.perf_counter()
            runner.run(images)
            once = max(time.perf_counter() - start, 1e-4)
            iterations = int(min(MAX_ITERATIONS, max(MIN_ITERATIONS, MIN_SECONDS / once)))
            return measure_latency(runner.run, images, warmup=3, iterations=iterations)["p50"]
