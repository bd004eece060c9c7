"""A float16 ONNX for strongly typed TensorRT (10.x with --stronglyTyped, always in 11.x).

TensorRT 11 removed the FP16 builder flag: an engine runs in the types its ONNX graph declares. This writes a
mixed-precision graph with onnxruntime's own converter (`onnxruntime.transformers.float16`, shipped with
onnxruntime, no extra dependency): MatMul / Gemm / Conv / GELU run in float16, while the numerically sensitive ops
stay in float32 behind Cast nodes. The inputs and outputs stay float32, so callers feed and read the same arrays
as for the fp32 model.

What the TorchScript exporter emits for a timm ViT at opset 17 (checked on vit-micro): LayerNormalization as one
op (the decomposed ReduceMean / Sub / Pow / Sqrt / Div pattern appears below opset 17), Softmax, Erf for GELU,
Sqrt and Div computing attention's scale from the head size, and ReduceMean for average pooling. The defaults keep
all of those reductions and normalisations in float32, including the decomposed LayerNorm's ops.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from edgeprune.errors import EdgepruneError
from edgeprune.workspace import atomic_path

DEFAULT_KEEP_FP32_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "Softmax",
    "ReduceMean",  # decomposed LayerNorm's mean and variance; average pooling over tokens
    "ReduceSum",
    "Pow",  # decomposed LayerNorm's (x - mean)^2
    "Sqrt",  # decomposed LayerNorm's sqrt(var + eps); attention's scale
    "Exp",  # decomposed Softmax
    "Log",
)


def is_float16_model(path: Path) -> bool:
    """Whether the graph holds any float16 tensor (initializer, Cast target or declared value)."""
    model = onnx.load(str(path), load_external_data=False)
    fp16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == fp16 for i in model.graph.initializer):
        return True
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute):
            return True
    return any(v.type.tensor_type.elem_type == fp16 for v in model.graph.value_info)


def _float16_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Op types (Cast excluded) whose first output is float16 after type inference, counted."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    counts = Counter(
        n.op_type
        for n in inferred.graph.node
        if n.op_type != "Cast" and n.output and types.get(n.output[0]) == onnx.TensorProto.FLOAT16
    )
    return dict(sorted(counts.items()))


def convert_fp16(
    fp32_onnx: Path,
    out: Path,
    keep_fp32_ops: tuple[str, ...] | list[str] = DEFAULT_KEEP_FP32_OPS,
) -> dict[str, Any]:
    """Write `out`: `fp32_onnx` in float16, with float32 inputs/outputs and `keep_fp32_ops` left in float32.

    Returns a description: op types kept in float32 (with counts), nodes converted, Cast nodes inserted.
    """
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(fp32_onnx))
    before = Counter(n.op_type for n in model.graph.node)
    # The converter's own block list names ops without float16 kernels; extend it, do not replace it.
    block = list(dict.fromkeys([*float16.DEFAULT_OP_BLOCK_LIST, *keep_fp32_ops]))
    logger = logging.getLogger("onnxruntime.transformers.float16")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    except Exception as exc:
        raise EdgepruneError(f"could not convert {fp32_onnx.name} to float16: {exc}") from None
    finally:
        logger.setLevel(level)
    wrapper = OnnxModel(converted)
    wrapper.topological_sort()  # the converter appends the input/output Casts at the end of the node list
    converted = wrapper.model
    try:
        onnx.checker.check_model(converted, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgepruneError(f"the float16 graph of {fp32_onnx.name} is not valid ONNX: {exc}") from None

    with atomic_path(out) as tmp:
        onnx.save(converted, str(tmp))

    after = Counter(n.op_type for n in converted.graph.node)
    return {
        "precision": "fp16",
        "io_types": "float32",
        "ops_kept_fp32": {op: before[op] for op in keep_fp32_ops if before[op]},
        "ops_fp16": _float16_ops(converted),
        "casts_inserted": after["Cast"] - before["Cast"],
        "converter": f"onnxruntime.transformers.float16 (onnxruntime {ort.__version__})",
    }
