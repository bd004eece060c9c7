"""TensorRT engines (TensorRT 10 and 11), one import for the `trt_*` modules: `trt_common` (lazy `tensorrt` import,
build plans, trtexec flags, ONNX forms), `trt_build` (build an engine), `trt_runner` (run one) and `trt_bundle` (a
deploy bundle, built on the device where TensorRT is missing here)."""

from edgeprune.export.trt_build import build_engine
from edgeprune.export.trt_bundle import build_bundle, build_script, read_bundle_manifest, verify_bundle, write_bundle
from edgeprune.export.trt_common import (
    ENGINE_FILE,
    MISSING_HINT,
    TIMING_CACHE_FILE,
    BuildPlan,
    OnnxForm,
    onnx_input_chw,
    onnx_kind,
    plan_build,
    require_tensorrt,
    tensorrt_available,
    tensorrt_version,
    trtexec_command,
)
from edgeprune.export.trt_runner import TrtRunner

__all__ = [
    "ENGINE_FILE", "MISSING_HINT", "TIMING_CACHE_FILE", "BuildPlan", "OnnxForm", "TrtRunner", "build_bundle",
    "build_engine", "build_script", "onnx_input_chw", "onnx_kind", "plan_build", "read_bundle_manifest",
    "require_tensorrt", "tensorrt_available", "tensorrt_version", "trtexec_command", "verify_bundle", "write_bundle",
]  # fmt: skip
