"""Static INT8 (QDQ) on a tiny ViT: calibrated on source-domain images, compared with fp32 on the held-out sketches."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeprune.errors import EdgepruneError
from edgeprune.export.quantize import agreement, image_digest, is_qdq_model, quantize_static_int8
from edgeprune.export.runners import OrtRunner
from tests.tiny_vit import TinyVit


def test_int8_agrees_with_fp32_on_the_held_out_domain(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    info = quantize_static_int8(fp32_onnx, out, tiny.source_images)
    assert info["calibration_images"] == len(tiny.source_images) == 126
    # The record names the images actually calibrated on, in order: the source images, none of the sketches.
    assert info["calibration_sha256"] == [image_digest(x) for x in tiny.source_images]
    assert not set(info["calibration_sha256"]) & {image_digest(x) for x in tiny.target_images}
    assert "calibration_sources" not in info
    assert info["format"] == "QDQ" and info["calibration_method"] == "minmax"
    # The 4 linear layers of each of the 4 blocks are INT8; the attention products (two activations), the
    # sensitive ops and the head stay float.
    assert info["nodes_quantized"] == {"MatMul": 16} and not info["attention_products_quantized"]
    assert {"LayerNormalization", "Softmax", "Erf", "Conv", "Gemm"} <= set(info["nodes_kept_float"])
    assert is_qdq_model(out) and not is_qdq_model(fp32_onnx)
    assert not list(tmp_path.glob(".*tmp*"))

    result = agreement(fp32_onnx, out, tiny.target_images)
    assert result["samples"] == 42
    assert result["top1_agreement"] >= 0.97, result
    assert result["max_abs_diff"] < 0.5, result  # quantizing Add/Conv/Gemm and outputs too gives about 4.5

    # TensorRT's explicit quantization needs symmetric INT8: every zero point is 0.
    model = onnx.load(str(out))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [initializers[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # The batch dimension stays dynamic.
    assert OrtRunner(out).run(tiny.target_images[:3]).shape == (3, 7)


def test_onnxruntime_int8_may_use_asymmetric_percentile_ranges(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "asym.onnx"
    info = quantize_static_int8(
        fp32_onnx, out, tiny.source_images[:32], symmetric_activations=False, method="percentile"
    )
    assert info["activations"] == "int8 per-tensor asymmetric" and info["calibration_method"] == "percentile"
    assert info["calibration_sha256"] == [image_digest(x) for x in tiny.source_images[:32]]
    assert agreement(fp32_onnx, out, tiny.target_images)["top1_agreement"] >= 0.97


def test_calibration_from_an_iterable_of_batches(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    batches = (tiny.source_images[i : i + 16] for i in range(0, 48, 16))
    names = [f"{domain}/class/{i}.png" for domain in ("photo", "cartoon") for i in range(24)]
    info = quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", batches, per_channel=False, calibration_sources=names)
    assert info["calibration_images"] == 48 and info["weights"].startswith("int8 per-tensor")
    assert info["calibration_sha256"] == [image_digest(x) for x in tiny.source_images[:48]]
    assert info["calibration_sources"] == names and info["calibration_domains"] == ["cartoon", "photo"]


def test_calibration_sources_must_name_every_image(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgepruneError, match="3 calibration sources were named for 4 calibration images"):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", tiny.source_images[:4], calibration_sources=["a"] * 3)
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_refuses_bad_input(fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgepruneError, match="no calibration images"):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", np.zeros((0, 3, 64, 64), np.float32))
    with pytest.raises(EdgepruneError, match="unknown calibration method"):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", np.zeros((1, 3, 64, 64), np.float32), method="kl")
    with pytest.raises(EdgepruneError, match="nothing to quantize"):
        quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", [], quantize_ops=("Softmax",))
    assert not (tmp_path / "q.onnx").exists()


def test_a_preprocessed_graph_is_not_preprocessed_again(
    fp32_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime.quantization.shape_inference as shape_inference

    from edgeprune.export.quantize import preprocessed

    once, done = preprocessed(fp32_onnx, tmp_path)
    assert done and once != fp32_onnx
    monkeypatch.setattr(shape_inference, "quant_pre_process", lambda *a, **k: pytest.fail("preprocessed twice"))
    assert preprocessed(once, tmp_path / "again") == (once, True)
