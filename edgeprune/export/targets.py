"""Export targets: a backend and a precision."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.errors import EdgepruneError


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    precision: str
    description: str


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("onnx", "onnxruntime", "fp32", "the exported ONNX as it is, run by onnxruntime on the CPU"),
        Target("ort-cpu", "onnxruntime", "fp32", "onnxruntime CPU with the graph pre-optimised offline"),
        Target("ort-cpu-int8", "onnxruntime", "int8", "onnxruntime CPU, static QDQ INT8 (source-calibrated)"),
        Target("ort-cuda", "onnxruntime", "fp32", "onnxruntime CUDA execution provider (onnxruntime-gpu)"),
        Target("ort-trt", "onnxruntime", "fp16", "onnxruntime TensorRT execution provider (onnxruntime-gpu)"),
        Target("trt-fp32", "tensorrt", "fp32", "TensorRT engine, fp32 (or a deploy bundle)"),
        Target("trt-fp16", "tensorrt", "fp16", "TensorRT engine, fp16 (or a deploy bundle)"),
        Target("trt-int8", "tensorrt", "int8", "TensorRT engine, int8 from QDQ (or a deploy bundle)"),
    ]
}


def resolve_target(name: str) -> Target:
    target = TARGETS.get(name)
    if target is None:
        raise EdgepruneError(f"unknown --target '{name}': choose one of {', '.join(TARGETS)}")
    return target
