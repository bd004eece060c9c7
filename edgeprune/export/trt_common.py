"""What TensorRT building, running and deploy bundles share: the lazy `tensorrt` import, the build plan for a
TensorRT version (pure logic, no TensorRT needed), the `trtexec` command for a plan, and the ONNX forms TensorRT
consumes.

TensorRT 10 (JetPack 6 ships 10.3) builds weakly typed networks: the ONNX stays float32 and builder flags pick
the precision (FP16; INT8 + FP16 for a QDQ model, whose Q/DQ nodes fix what runs in INT8). TensorRT 11 removed
those flags: every network is strongly typed and runs in the types its ONNX declares, so fp16 needs the float16
ONNX from `edgeprune.export.fp16` and int8 a QDQ ONNX from `edgeprune.export.quantize`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType

import onnx
from packaging.version import Version

from edgeprune.errors import EdgepruneError
from edgeprune.export.fp16 import is_float16_model
from edgeprune.export.onnx_export import INPUT_NAME
from edgeprune.export.quantize import is_qdq_model
from edgeprune.profiles import Profile
from edgeprune.targets import TARGETS, Target

ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
MISSING_HINT = (
    "TensorRT is not installed here: it needs an NVIDIA GPU and NVIDIA's libraries (`pip install tensorrt`, or "
    "JetPack on a Jetson). Use `edgeprune export --target trt-fp16` to write a deploy bundle and build it on the "
    "device with `edgeprune build BUNDLE`"
)
# The TensorRT engine target of each precision, from the registry (trt-fp32, trt-fp16, trt-int8).
TRT_BY_PRECISION: dict[str, Target] = {t.precision: t for t in TARGETS.values() if t.tensorrt_engine}
STRONGLY_TYPED_MAJOR = 11  # TensorRT 11 removed the precision flags: every network is strongly typed
NO_DLA = ((11, 0), (11, 4))  # [from, to) (major, minor): TensorRT 11.0 to 11.3 dropped DLA support


# --------------------------------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tensorrt() -> ModuleType | None:
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the wheel is there but libnvinfer or the CUDA driver is not
        return None
    return tensorrt


def tensorrt_available() -> bool:
    return _tensorrt() is not None


def tensorrt_version() -> str | None:
    trt = _tensorrt()
    return None if trt is None else str(trt.__version__)


def require_tensorrt() -> ModuleType:
    trt = _tensorrt()
    if trt is None:
        raise EdgepruneError(MISSING_HINT)
    return trt


def release(version: str) -> tuple[int, ...]:
    """A TensorRT version's numbers: "10.3.0.30" -> (10, 3, 0, 30); pre-release and post tags are left out."""
    return Version(version).release


def strongly_typed(version: str) -> bool:
    return release(version)[0] >= STRONGLY_TYPED_MAJOR


# --------------------------------------------------------------------------------------------------------------
# ONNX forms
# --------------------------------------------------------------------------------------------------------------


class OnnxForm(str, Enum):
    """What an ONNX file is to TensorRT; the value is how build records and error messages name it."""

    FP32 = "fp32"  # the float32 export
    FP16 = "fp16"  # converted to float16 (edgeprune.export.fp16)
    QDQ = "qdq"  # quantized, with Q/DQ nodes (edgeprune.export.quantize)

    def __str__(self) -> str:
        return self.value

    @property
    def file_name(self) -> str:
        """Its name in a deploy bundle (and in the build's scratch folder)."""
        return {OnnxForm.FP32: "model.onnx", OnnxForm.FP16: "model.fp16.onnx", OnnxForm.QDQ: "model.int8.onnx"}[self]


def onnx_form(target: Target, strongly_typed: bool) -> OnnxForm:
    """The ONNX that TensorRT needs for `target`: QDQ for integer precision; float16 for fp16 on a strongly typed
    TensorRT (11), which runs the ONNX's own types; otherwise the fp32 export (TensorRT 10 picks fp16 by a flag)."""
    if target.needs_calibration:
        return OnnxForm.QDQ
    return OnnxForm.FP16 if target.float16 and strongly_typed else OnnxForm.FP32


def onnx_kind(path: Path) -> OnnxForm:
    if is_qdq_model(path):
        return OnnxForm.QDQ
    return OnnxForm.FP16 if is_float16_model(path) else OnnxForm.FP32


def onnx_input_chw(path: Path, input_name: str = INPUT_NAME) -> tuple[int, int, int]:
    """(C, H, W) of the model's input; the batch dimension may be dynamic, the others must be fixed."""
    model = onnx.load(str(path), load_external_data=False)
    for value in model.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
                raise EdgepruneError(f"{path.name}: input '{input_name}' must be (batch, C, H, W) with fixed C, H, W")
            return dims[1].dim_value, dims[2].dim_value, dims[3].dim_value
    raise EdgepruneError(f"{path.name} has no input named '{input_name}' (see edgeprune.export.onnx_export)")


# --------------------------------------------------------------------------------------------------------------
# Build plan: what a given TensorRT version needs for a precision and a profile (pure logic, no TensorRT needed)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    tensorrt_major: int
    target: Target  # the TensorRT engine target: its traits say the precision
    strongly_typed: bool  # TensorRT 11: precision comes from the ONNX types
    onnx_kind: OnnxForm  # what the ONNX handed to TensorRT must be
    builder_flags: tuple[str, ...]  # weakly typed precision flags (TensorRT 10): "FP16", "INT8"
    input_shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # min, opt, max
    workspace_mib: int
    dla_core: int

    @property
    def precision(self) -> str:
        return self.target.precision


def trt_target(precision: str) -> Target:
    target = TRT_BY_PRECISION.get(precision)
    if target is None:
        choices = list(TRT_BY_PRECISION)
        raise EdgepruneError(
            f"unknown TensorRT precision '{precision}': choose {', '.join(choices[:-1])} or {choices[-1]}"
        )
    return target


def weak_typing_flags(target: Target) -> tuple[str, ...]:
    """TensorRT 10's precision flags: INT8 enables a QDQ model's explicit Q/DQ layers; FP16 lets TensorRT pick fp16
    kernels (for int8, in the layers the Q/DQ nodes leave in float)."""
    return (("INT8",) if target.needs_calibration else ()) + (("FP16",) if target.reduced_precision else ())


def _check_dla(tensorrt_version: str, target: Target, profile: Profile) -> None:
    settings = profile.tensorrt
    if settings is None or not settings.uses_dla:
        return
    if not target.reduced_precision:
        raise EdgepruneError(f"profile '{profile.name}' uses DLA core {settings.dla_core}: the DLA has no fp32")
    if NO_DLA[0] <= release(tensorrt_version)[:2] < NO_DLA[1]:
        raise EdgepruneError(
            f"TensorRT {tensorrt_version} has no DLA support (11.0 to 11.3 dropped it; 11.4.1 on JetPack 7.2.2+ and "
            "10.x have it): use another TensorRT or set tensorrt.dla_core = -1"
        )


def plan_build(tensorrt_version: str, precision: str, profile: Profile, chw: tuple[int, int, int]) -> BuildPlan:
    """The build settings for TensorRT `tensorrt_version`; errors when the profile cannot be built with it."""
    target = trt_target(precision)
    settings = profile.tensorrt
    if settings is None:
        raise EdgepruneError(f"profile '{profile.name}' has no [tensorrt] section: it does not target TensorRT")
    major = release(tensorrt_version)[0]
    if not settings.accepts(tensorrt_version):
        raise EdgepruneError(
            f"TensorRT {tensorrt_version} is outside profile '{profile.name}''s range "
            f"{settings.version_min} to {settings.version_max}"
        )
    _check_dla(tensorrt_version, target, profile)
    strong = strongly_typed(tensorrt_version)
    flags = () if strong else weak_typing_flags(target)
    batch = profile.batch
    shapes = tuple((b, *chw) for b in (batch.min, batch.opt, batch.max))
    form = onnx_form(target, strong)
    return BuildPlan(major, target, strong, form, flags, shapes, settings.workspace_mib, settings.dla_core)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(
    plan: BuildPlan,
    onnx_file: str,
    engine_file: str = ENGINE_FILE,
    timing_cache_file: str | None = TIMING_CACHE_FILE,
    input_name: str = INPUT_NAME,
) -> list[str]:
    """The `trtexec` arguments (without the program) that build `plan`'s engine from `onnx_file`."""
    low, opt, high = plan.input_shapes
    args = [
        f"--onnx={onnx_file}",
        f"--saveEngine={engine_file}",
        f"--minShapes={input_name}:{_shape_text(low)}",
        f"--optShapes={input_name}:{_shape_text(opt)}",
        f"--maxShapes={input_name}:{_shape_text(high)}",
        f"--memPoolSize=workspace:{plan.workspace_mib}M",
    ]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in plan.builder_flags]
    if plan.dla_core >= 0:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    if timing_cache_file:
        args.append(f"--timingCacheFile={timing_cache_file}")
    return args
