"""Engine builders per target, and the runner that executes each: one small interface over every backend.

A build turns the exported `<name>.onnx` files (the pruned model and its unpruned baseline) into what the target
runs, in one folder, and returns what `build.json` records about each engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeprune.backends.base import Runner
from edgeprune.errors import EdgepruneError
from edgeprune.export.int8 import GUARD_AGREEMENT, build_int8
from edgeprune.export.ort_engine import build_ort_cpu
from edgeprune.export.ort_fp16 import build_ort_fp16
from edgeprune.export.quantize import agreement
from edgeprune.export.runners import OrtRunner
from edgeprune.export.tensorrt import (
    ENGINE_FILE,
    TrtRunner,
    build_engine,
    tensorrt_available,
    write_bundle,
)
from edgeprune.hardware import capped_threads
from edgeprune.profiles import Profile
from edgeprune.targets import Target
from edgeprune.workspace import file_sha256


def ort_providers(target: Target, profile: Profile, cache_dir: Path) -> list[Any]:
    """onnxruntime providers and options for a GPU target (TensorRT EP options from the target and profile)."""
    if target.uses_tensorrt:
        trt = profile.tensorrt
        options = {
            "trt_fp16_enable": target.float16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_max_workspace_size": (trt.workspace_mib if trt else 1024) << 20,
        }
        return [(target.provider, options)]
    return [target.provider]


@dataclass(frozen=True)
class BuildContext:
    """What every builder gets besides the source ONNX: see `build_target`."""

    target: Target
    folder: Path
    profile: Profile
    calibration: np.ndarray | None
    check_images: np.ndarray | None
    run_relative: str
    extra: dict[str, Any]  # what build.json records besides the engines (quantization, bundles, ...)
    guard_images: np.ndarray | None = None  # source-domain images, not the calibration ones: int8's accuracy guard
    timed_choices: bool = True  # CPU builds time their variants (fused or not, static or dynamic) and keep the faster

    def engine_path(self, name: str) -> Path:
        return self.folder / f"{name}{self.target.engine_suffix}"

    def entry(self, engine: Path) -> dict[str, str]:
        return {"path": f"{self.run_relative}/{engine.name}", "sha256": file_sha256(engine)}


def _exported_as_is(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    return {"path": f"export/{source.name}", "sha256": file_sha256(source)}


def _judged_at(ctx: BuildContext) -> tuple[int, ...]:
    """The batch sizes a CPU build times its variants at: the profile's usual one first, then its largest."""
    batch = ctx.profile.batch
    return tuple(dict.fromkeys((batch.opt, batch.max))) if ctx.timed_choices else ()


def _ort_optimised(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    engine = ctx.engine_path(name)
    threads = capped_threads(ctx.profile.backend.threads)
    record = build_ort_cpu(source, engine, batch_sizes=_judged_at(ctx), threads=threads)
    ctx.extra.setdefault("cpu_graph", {})[name] = record
    return ctx.entry(engine)


def _ort_int8(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    """Static or dynamic INT8, whichever is faster here among those the guard makes agree with fp32 on source
    images (latency probes pass no guard images: no guard, and static unless their build times the two)."""
    engine = ctx.engine_path(name)
    if ctx.calibration is None:
        raise EdgepruneError("INT8 needs source-domain calibration images")
    info = build_int8(
        source,
        engine,
        ctx.calibration,
        ctx.calibration[:8] if ctx.guard_images is None else ctx.guard_images,
        target=GUARD_AGREEMENT if ctx.guard_images is not None else 0.0,
        batch_sizes=_judged_at(ctx),
        threads=capped_threads(ctx.profile.backend.threads),
    )
    if ctx.check_images is not None:
        info["agreement_with_fp32"] = agreement(source, engine, ctx.check_images)
    ctx.extra.setdefault("quantization", {})[name] = info
    return ctx.entry(engine)


def _ort_provider(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    wanted = ctx.target.provider
    if wanted not in ort.get_available_providers():
        raise EdgepruneError(
            f"target '{ctx.target.name}' needs onnxruntime's {wanted}, which this onnxruntime lacks "
            f"(it has {', '.join(ort.get_available_providers())}): install `edgeprune[gpu]` on a GPU machine"
        )
    return _exported_as_is(ctx, name, source, model_sha256)


def _tensorrt(ctx: BuildContext, name: str, source: Path, model_sha256: str) -> dict[str, Any]:
    """An engine where TensorRT is installed; elsewhere a deploy bundle to build on the device."""
    target = ctx.target
    if tensorrt_available():
        engine = ctx.engine_path(name)
        ctx.extra.setdefault("tensorrt", {})[name] = build_engine(
            source,
            engine,
            precision=target.precision,
            profile=ctx.profile,
            timing_cache=ctx.folder / "timing.cache",
            calibration=ctx.calibration,
        )
        return ctx.entry(engine)
    bundle = ctx.folder / name
    manifest = write_bundle(
        bundle,
        onnx_path=source,
        target=target.name,
        profile=ctx.profile,
        calibration=ctx.calibration if target.needs_calibration else None,
        model_sha256=model_sha256,
        onnx_sha256=file_sha256(source),
    )
    if target.float16 and ctx.check_images is not None:
        manifest["fp16_agreement_with_fp32"] = agreement(source, bundle / "model.fp16.onnx", ctx.check_images)
    ctx.extra.setdefault("bundles", {})[name] = manifest
    ctx.extra["note"] = "TensorRT is not installed here: wrote deploy bundles; build them on the device"
    return {"bundle": f"{ctx.run_relative}/{name}", "path": f"{ctx.run_relative}/{name}/{ENGINE_FILE}"}


Builder = Callable[[BuildContext, str, Path, str], dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    "copy": _exported_as_is,
    "ort-optimise": _ort_optimised,
    "ort-int8": _ort_int8,
    "ort-provider": _ort_provider,
    "tensorrt": _tensorrt,
    "ort-fp16": build_ort_fp16,
}


def build_target(
    target: Target,
    sources: dict[str, Path],
    model_sha256: dict[str, str],
    folder: Path,
    profile: Profile,
    calibration: np.ndarray | None,
    check_images: np.ndarray | None,
    run_relative: str,
    guard_images: np.ndarray | None = None,
    timed_choices: bool = True,
) -> dict[str, Any]:
    """Build every source ONNX for `target` into `folder`; `run_relative` is `folder` as seen from the run.

    `calibration` (source-domain images) is needed for int8; `check_images` (held-out images) measure how far
    int8 and float16 graphs agree with fp32; `guard_images` (other source-domain images) are what int8's accuracy
    guard judges by. `timed_choices=False` (latency probes) keeps the fused / static variant without timing.
    """
    extra: dict[str, Any] = {}
    context = BuildContext(
        target, folder, profile, calibration, check_images, run_relative, extra, guard_images, timed_choices
    )
    builder = BUILDERS[target.builder]
    engines = {name: builder(context, name, source, model_sha256[name]) for name, source in sources.items()}
    return {"engines": engines, **extra}


def _ort_runner(target: Target, engine: Path, profile: Profile, threads: int | None, cache_dir: Path) -> Runner:
    if target.provider is None:
        return OrtRunner(engine, threads=threads)
    runner = OrtRunner(engine, threads=threads, providers=ort_providers(target, profile, cache_dir))
    active = runner.session.get_providers()[0]
    if active != target.provider:
        raise EdgepruneError(
            f"onnxruntime fell back to {active} for target '{target.name}': check the GPU and onnxruntime-gpu"
        )
    return runner


def _trt_runner(target: Target, engine: Path, profile: Profile, threads: int | None, cache_dir: Path) -> Runner:
    return TrtRunner(engine)


RUNNERS: dict[str, Callable[[Target, Path, Profile, int | None, Path], Runner]] = {
    "ort": _ort_runner,
    "tensorrt": _trt_runner,
}


def make_runner(target: Target, engine: Path, profile: Profile, threads: int | None, cache_dir: Path) -> Runner:
    return RUNNERS[target.runner](target, engine, profile, threads, cache_dir)
