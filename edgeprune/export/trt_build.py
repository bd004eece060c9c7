"""Build a TensorRT engine with the installed TensorRT (10 or 11) through its Python API."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.export.fp16 import convert_fp16
from edgeprune.export.quantize import quantize_static_int8
from edgeprune.export.trt_common import (
    BuildPlan,
    OnnxForm,
    onnx_input_chw,
    onnx_kind,
    plan_build,
    require_tensorrt,
)
from edgeprune.profiles import Profile
from edgeprune.workspace import atomic_write_bytes, file_sha256, utc_now


def _prepare_onnx(onnx_path: Path, plan: BuildPlan, calibration: np.ndarray | None, work: Path) -> tuple[Path, dict]:
    """The ONNX file that `plan` needs, converting or quantizing `onnx_path` into `work` when it is not that."""
    kind = onnx_kind(onnx_path)
    # A float16 ONNX also serves a weakly typed fp16 build (TensorRT 10 runs it with the FP16 flag).
    if kind is plan.onnx_kind or (kind is OnnxForm.FP16 and plan.target.float16):
        return onnx_path, {}
    if plan.onnx_kind is OnnxForm.FP16 and kind is OnnxForm.FP32:
        target = work / OnnxForm.FP16.file_name
        return target, {"fp16": convert_fp16(onnx_path, target)}
    if plan.onnx_kind is OnnxForm.QDQ and kind is OnnxForm.FP32:
        if calibration is None:
            raise EdgepruneError(
                f"{onnx_path.name} is not quantized: {plan.target.name} needs a QDQ ONNX or calibration images "
                "(source-domain images only) to quantize it with"
            )
        target = work / OnnxForm.QDQ.file_name
        return target, {"quantization": quantize_static_int8(onnx_path, target, calibration)}
    raise EdgepruneError(
        f"{onnx_path.name} is a {kind} ONNX but a {plan.precision} engine on TensorRT {plan.tensorrt_major} "
        f"needs a {plan.onnx_kind} one: pass the fp32 model.onnx"
    )


def _network_flags(trt: ModuleType, major: int) -> int:
    if major < 10:  # TensorRT 8.x: explicit batch is opt-in (implicit batch is gone in 10)
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0  # 10.x: weakly typed (precision flags); 11.x: always strongly typed, the flag is ignored


def _builder_config(
    trt: ModuleType, builder: Any, network: Any, plan: BuildPlan, profile: Profile, timing_cache: Path | None
) -> Any:
    """The builder config for `plan`: workspace, precision flags, the batch range, DLA and the timing cache."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    input_name = network.get_input(0).name
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(input_name, *plan.input_shapes)
    config.add_optimization_profile(optimisation)
    if plan.dla_core >= 0:
        if builder.num_DLA_cores <= plan.dla_core:
            raise EdgepruneError(
                f"profile '{profile.name}' asks for DLA core {plan.dla_core} but this device has "
                f"{builder.num_DLA_cores} DLA core(s)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if timing_cache is not None:
        previous = timing_cache.read_bytes() if timing_cache.exists() else b""
        config.set_timing_cache(config.create_timing_cache(previous), ignore_mismatch=False)
    return config


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str,
    profile: Profile,
    timing_cache: Path | None = None,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build `engine_path` from `onnx_path` for `profile` with the installed TensorRT; returns a build record.

    `onnx_path` is the fp32 export (converted to float16 / quantized here when TensorRT 11 or int8 needs it:
    int8 then needs `calibration`, source-domain images only) or an already converted float16 / QDQ ONNX.
    `timing_cache` is read when it exists and written back after the build, which makes rebuilds fast.
    """
    trt = require_tensorrt()
    version = str(trt.__version__)
    plan = plan_build(version, precision, profile, onnx_input_chw(onnx_path))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeprune-trt-") as work:
        model_path, conversions = _prepare_onnx(onnx_path, plan, calibration, Path(work))
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt, plan.tensorrt_major))
        parser = trt.OnnxParser(network, logger)  # it holds the weights: keep it until the engine is built
        if not parser.parse_from_file(str(model_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EdgepruneError(f"TensorRT {version} cannot parse {onnx_path.name}: {errors}")
        config = _builder_config(trt, builder, network, plan, profile, timing_cache)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EdgepruneError(
                f"TensorRT {version} could not build a {precision} engine from {onnx_path.name} (see the TensorRT "
                f"log above; a larger tensorrt.workspace_mib in profile '{profile.name}' can help)"
            )
        atomic_write_bytes(engine_path, bytes(serialized))
        if timing_cache is not None:
            atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    record = _build_record(version, plan, profile, onnx_path, engine_path, timing_cache)
    seconds = round(time.perf_counter() - started, 2)
    return {**record, "conversions": conversions, "build_seconds": seconds, "created": utc_now()}


def _build_record(
    version: str, plan: BuildPlan, profile: Profile, onnx_path: Path, engine_path: Path, timing_cache: Path | None
) -> dict[str, Any]:
    return {
        "tensorrt": version,
        "precision": plan.precision,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "profile": profile.name,
        "input_shapes": {k: list(s) for k, s in zip(("min", "opt", "max"), plan.input_shapes, strict=True)},
        "workspace_mib": plan.workspace_mib,
        "dla_core": plan.dla_core,
        "onnx_sha256": file_sha256(onnx_path),
        "engine_sha256": file_sha256(engine_path),
        "timing_cache": None if timing_cache is None else str(timing_cache),
    }


__all__ = ["build_engine"]
