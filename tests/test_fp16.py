"""float16 ONNX (fp32 inputs/outputs, LayerNorm / Softmax in fp32) for strongly typed TensorRT, run on onnxruntime."""

from pathlib import Path

import numpy as np
import onnx

from edgeprune.export.fp16 import convert_fp16, is_float16_model
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.quantize import agreement
from edgeprune.export.runners import OrtRunner
from tests.tiny_vit import TinyVit

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _input_types(model: onnx.ModelProto, op_type: str) -> set[int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return {types[i] for n in inferred.graph.node if n.op_type == op_type for i in n.input if i in types}


def test_fp16_model_agrees_with_fp32(tiny: TinyVit, tmp_path: Path) -> None:
    fp32, fp16 = tmp_path / "model.onnx", tmp_path / "model.fp16.onnx"
    export_onnx(tiny.model, fp32)
    info = convert_fp16(fp32, fp16)
    # 4 blocks x 2 LayerNorms + the final norm; 4 Softmax; the average pooling's ReduceMean
    assert {"LayerNormalization": 9, "Softmax": 4, "ReduceMean": 1}.items() <= info["ops_kept_fp32"].items()
    assert info["ops_fp16"]["MatMul"] == 24 and info["ops_fp16"]["Conv"] == 1 and info["casts_inserted"] > 0
    assert is_float16_model(fp16) and not is_float16_model(fp32)
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size

    model = onnx.load(str(fp16))
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == FLOAT
    assert _input_types(model, "LayerNormalization") == {FLOAT}
    assert _input_types(model, "Softmax") == {FLOAT}
    assert _input_types(model, "MatMul") == {FLOAT16}

    logits = OrtRunner(fp16).run(tiny.target_images[:2])
    assert logits.dtype == np.float32 and logits.shape == (2, 7)
    result = agreement(fp32, fp16, tiny.target_images)
    assert result["top1_agreement"] >= 0.97, result
    assert result["max_abs_diff"] < 0.25, result


def test_keep_fp32_ops_is_configurable(tiny: TinyVit, tmp_path: Path) -> None:
    fp32 = tmp_path / "model.onnx"
    export_onnx(tiny.model, fp32)
    info = convert_fp16(fp32, tmp_path / "all.fp16.onnx", keep_fp32_ops=("LayerNormalization", "Softmax", "MatMul"))
    assert info["ops_kept_fp32"]["MatMul"] == 24 and "MatMul" not in info["ops_fp16"]
