"""Export targets: a backend and a precision. Each names what builds it and whether this version can."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.errors import EdgepruneError


@dataclass(frozen=True)
class Target:
    name: str
    backend: str
    precision: str
    description: str
    available: bool


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("onnx", "onnxruntime", "fp32", "the exported ONNX as it is, run by onnxruntime on the CPU", True),
        Target("ort-cpu", "onnxruntime", "fp32", "onnxruntime CPU with the graph pre-optimised offline", True),
        Target("ort-cpu-int8", "onnxruntime", "int8", "onnxruntime CPU, static QDQ INT8", False),
        Target("ort-cuda", "onnxruntime", "fp32", "onnxruntime CUDA execution provider", False),
        Target("ort-trt", "onnxruntime", "fp16", "onnxruntime TensorRT execution provider", False),
        Target("trt-fp32", "tensorrt", "fp32", "TensorRT engine, fp32", False),
        Target("trt-fp16", "tensorrt", "fp16", "TensorRT engine, fp16", False),
        Target("trt-int8", "tensorrt", "int8", "TensorRT engine, int8", False),
    ]
}


def resolve_target(name: str) -> Target:
    target = TARGETS.get(name)
    if target is None:
        raise EdgepruneError(f"unknown --target '{name}': choose one of {', '.join(TARGETS)}")
    if not target.available:
        ready = ", ".join(t.name for t in TARGETS.values() if t.available)
        raise EdgepruneError(f"target '{name}' ({target.description}) is not built by this version yet: use {ready}")
    return target
