"""The target registry: every `--target` declared once, with what the rest of the code needs to know about it.

A target is a backend and a precision plus traits; the builder that turns the exported ONNX into what it runs and
the runner that executes it are named here and looked up by that name in `export.engines`. Nothing outside this
module branches on a target's name or precision: code asks a trait instead. Adding a target is one entry here
(plus a builder or runner in `export.engines` when none of the existing ones fits).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.errors import EdgepruneError


@dataclass(frozen=True)
class Target:
    name: str
    backend: str  # "onnxruntime" or "tensorrt"
    precision: str  # "fp32", "fp16" or "int8"
    description: str
    builder: str  # key of export.engines.BUILDERS
    runner: str  # key of export.engines.RUNNERS
    provider: str | None = None  # onnxruntime execution provider of a GPU target
    engine_suffix: str = ".onnx"

    @property
    def needs_gpu(self) -> bool:
        return self.provider is not None or self.tensorrt_engine

    @property
    def tensorrt_engine(self) -> bool:
        """Runs a TensorRT engine built by edgeprune (or, without TensorRT, a deploy bundle)."""
        return self.backend == "tensorrt"

    @property
    def onnxruntime_cpu(self) -> bool:
        """onnxruntime on its CPU provider (what bench can profile node by node in this process)."""
        return self.backend == "onnxruntime" and self.provider is None

    @property
    def fuses_attention(self) -> bool:
        """Its build fuses attention into an onnxruntime operator (export.attention_fusion): tables record which."""
        return self.builder == "ort-optimise"

    @property
    def uses_tensorrt(self) -> bool:
        """Built by TensorRT (directly or through onnxruntime's provider): the profile needs a [tensorrt] section."""
        return self.backend == "tensorrt" or self.provider == "TensorrtExecutionProvider"

    @property
    def float16(self) -> bool:
        return self.precision == "fp16"

    @property
    def needs_calibration(self) -> bool:
        """Needs source-domain images to calibrate (integer precision)."""
        return self.precision == "int8"

    @property
    def reduced_precision(self) -> bool:
        """Below fp32: export measures agreement with fp32 on held-out images."""
        return self.precision != "fp32"

    @property
    def fixed_batch_limits(self) -> bool:
        """Its engines accept only the profile's batch range (TensorRT optimisation profiles)."""
        return self.tensorrt_engine

    @property
    def compare_with_fp32_on_cpu(self) -> bool:
        """bench also times the fp32 graph on the same CPU, to report this target's speed-up over it."""
        return self.provider is None and self.backend == "onnxruntime" and self.reduced_precision


_ORT_CPU = {"backend": "onnxruntime", "runner": "ort"}
_ORT_GPU = {"backend": "onnxruntime", "runner": "ort", "builder": "ort-provider"}
_TRT = {"backend": "tensorrt", "runner": "tensorrt", "builder": "tensorrt", "engine_suffix": ".engine"}

TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "onnx", precision="fp32", builder="copy", **_ORT_CPU,
            description="the exported ONNX as it is, run by onnxruntime on the CPU",
        ),
        Target(
            "ort-cpu", precision="fp32", builder="ort-optimise", **_ORT_CPU,
            description="onnxruntime CPU with the graph pre-optimised offline",
        ),
        Target(
            "ort-cpu-fp16", precision="fp16", builder="ort-fp16", **_ORT_CPU,
            description="onnxruntime CPU running the float16 graph (checks fp16 accuracy without a GPU)",
        ),
        Target(
            "ort-cpu-int8", precision="int8", builder="ort-int8", **_ORT_CPU,
            description="onnxruntime CPU, static QDQ INT8 (source-calibrated)",
        ),
        Target(
            "ort-cuda", precision="fp32", provider="CUDAExecutionProvider", **_ORT_GPU,
            description="onnxruntime CUDA execution provider (onnxruntime-gpu)",
        ),
        Target(
            "ort-trt", precision="fp16", provider="TensorrtExecutionProvider", **_ORT_GPU,
            description="onnxruntime TensorRT execution provider (onnxruntime-gpu)",
        ),
        Target("trt-fp32", precision="fp32", description="TensorRT engine, fp32 (or a deploy bundle)", **_TRT),
        Target("trt-fp16", precision="fp16", description="TensorRT engine, fp16 (or a deploy bundle)", **_TRT),
        Target("trt-int8", precision="int8", description="TensorRT engine, int8 from QDQ (or a deploy bundle)", **_TRT),
    ]
}  # fmt: skip


DEFAULT_TARGET = "ort-cpu"  # without --target or a profile
ALL_TARGETS = "all"  # bench: every target built for the run
PRECISIONS = ("fp32", "fp16", "int8")  # every Target.precision, widest first


def resolve_target(name: str) -> Target:
    target = TARGETS.get(name)
    if target is None:
        raise EdgepruneError(f"unknown --target '{name}': choose one of {', '.join(TARGETS)}")
    return target


def targets_where(trait: str) -> tuple[str, ...]:
    return tuple(name for name, target in TARGETS.items() if getattr(target, trait))
