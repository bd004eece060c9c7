"""Engine builders per target, and the runner that executes each: one small interface over every backend.

A build turns the exported `<name>.onnx` files (the pruned model and its unpruned baseline) into what the target
runs, in one folder, and returns what `build.json` records about each engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeprune.errors import EdgepruneError
from edgeprune.export.ort_engine import optimise_for_cpu
from edgeprune.export.quantize import agreement, quantize_static_int8
from edgeprune.export.runners import OrtRunner
from edgeprune.export.targets import Target
from edgeprune.export.tensorrt import (
    ENGINE_FILE,
    TrtRunner,
    build_engine,
    tensorrt_available,
    write_bundle,
)
from edgeprune.profiles import Profile
from edgeprune.workspace import file_sha256

_GPU_PROVIDERS = {"ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}


def ort_providers(target: Target, profile: Profile, cache_dir: Path) -> list[Any]:
    """onnxruntime providers and options for a GPU target (TensorRT EP options from the target and profile)."""
    if target.name == "ort-trt":
        trt = profile.tensorrt
        options = {
            "trt_fp16_enable": target.precision == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_max_workspace_size": (trt.workspace_mib if trt else 1024) << 20,
        }
        return [("TensorrtExecutionProvider", options)]
    return ["CUDAExecutionProvider"]


def build_target(
    target: Target,
    sources: dict[str, Path],
    model_sha256: dict[str, str],
    folder: Path,
    profile: Profile,
    calibration: np.ndarray | None,
    check_images: np.ndarray | None,
    run_relative: str,
) -> dict[str, Any]:
    """Build every source ONNX for `target` into `folder`; `run_relative` is `folder` as seen from the run.

    `calibration` (source-domain images) is needed for int8; `check_images` (held-out images) measure how far
    int8 and float16 graphs agree with fp32.
    """
    engines: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, source in sources.items():
        if target.name == "onnx":
            engines[name] = {"path": f"export/{source.name}", "sha256": file_sha256(source)}
        elif target.name == "ort-cpu":
            optimise_for_cpu(source, folder / f"{name}.onnx")
        elif target.name == "ort-cpu-int8":
            # onnxruntime takes zero points, so activations may be asymmetric (TensorRT's int8 may not).
            info = quantize_static_int8(
                source, folder / f"{name}.onnx", calibration, symmetric_activations=False, method="percentile"
            )
            info["agreement_with_fp32"] = agreement(source, folder / f"{name}.onnx", check_images)
            extra.setdefault("quantization", {})[name] = info
        elif target.name in _GPU_PROVIDERS:
            wanted = _GPU_PROVIDERS[target.name]
            if wanted not in ort.get_available_providers():
                raise EdgepruneError(
                    f"target '{target.name}' needs onnxruntime's {wanted}, which this onnxruntime lacks "
                    f"(it has {', '.join(ort.get_available_providers())}): install `edgeprune[gpu]` on a GPU machine"
                )
            engines[name] = {"path": f"export/{source.name}", "sha256": file_sha256(source)}
        elif tensorrt_available():
            engine = folder / f"{name}.engine"
            extra.setdefault("tensorrt", {})[name] = build_engine(
                source,
                engine,
                precision=target.precision,
                profile=profile,
                timing_cache=folder / "timing.cache",
                calibration=calibration,
            )
        else:
            bundle = folder / name
            manifest = write_bundle(
                bundle,
                onnx_path=source,
                target=target.name,
                profile=profile,
                calibration=calibration if target.precision == "int8" else None,
                model_sha256=model_sha256[name],
                onnx_sha256=file_sha256(source),
            )
            if target.precision == "fp16" and check_images is not None:
                manifest["fp16_agreement_with_fp32"] = agreement(source, bundle / "model.fp16.onnx", check_images)
            extra.setdefault("bundles", {})[name] = manifest
            engines[name] = {"bundle": f"{run_relative}/{name}", "path": f"{run_relative}/{name}/{ENGINE_FILE}"}
            continue
        if name not in engines:
            suffix = ".engine" if target.backend == "tensorrt" else ".onnx"
            engine_file = folder / f"{name}{suffix}"
            engines[name] = {"path": f"{run_relative}/{engine_file.name}", "sha256": file_sha256(engine_file)}
    if "bundles" in extra:
        extra["note"] = "TensorRT is not installed here: wrote deploy bundles; build them on the device"
    return {"engines": engines, **extra}


def make_runner(target: Target, engine: Path, profile: Profile, threads: int | None, cache_dir: Path) -> Any:
    if target.backend == "tensorrt":
        return TrtRunner(engine)
    if target.name in _GPU_PROVIDERS:
        runner = OrtRunner(engine, threads=threads, providers=ort_providers(target, profile, cache_dir))
        active = runner.session.get_providers()[0]
        if active != _GPU_PROVIDERS[target.name]:
            raise EdgepruneError(
                f"onnxruntime fell back to {active} for target '{target.name}': check the GPU and onnxruntime-gpu"
            )
        return runner
    return OrtRunner(engine, threads=threads)
