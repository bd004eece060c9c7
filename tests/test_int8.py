"""INT8 for the CPU: streaming calibration, reusable ranges, the accuracy guard and the static/dynamic choice."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import calibrate

from edgeprune.errors import EdgepruneError
from edgeprune.export.int8 import build_int8, guard, quantize_dynamic_int8, sensitivity
from edgeprune.export.quantize import CALIBRATION_CHUNK, agreement, quantize_static_int8, ranges_cache_supported
from tests.tiny_vit import TinyVit


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_calibration_holds_one_chunk_of_activations_at_a_time(
    tiny: TinyVit, fp32_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    held: list[int] = []
    for calibrator in (calibrate.MinMaxCalibrater, calibrate.HistogramCalibrater):
        clear = calibrator.clear_collected_data

        def counting(self, clear=clear) -> None:  # type: ignore[no-untyped-def]
            held.append(len(self.intermediate_outputs))
            clear(self)

        monkeypatch.setattr(calibrator, "clear_collected_data", counting)
    images = tiny.source_images[:24]
    info = quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", images, method=method, symmetric_activations=False)
    # 24 images read in 3 chunks of 8: the calibrator never held the activations of more than one chunk.
    assert held == [CALIBRATION_CHUNK] * 3
    assert info["calibration_images"] == 24 and info["calibration_chunk"] == 8
    assert agreement(fp32_onnx, tmp_path / "q.onnx", tiny.source_images[24:64])["top1_agreement"] >= 0.95


def test_a_set_of_prime_size_is_read_one_image_at_a_time(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    info = quantize_static_int8(fp32_onnx, tmp_path / "q.onnx", tiny.source_images[:11])
    assert info["calibration_images"] == 11 and info["calibration_chunk"] == 1


@pytest.mark.skipif(not ranges_cache_supported(), reason="this onnxruntime cannot reuse calibrated ranges (< 1.32)")
def test_calibrated_ranges_are_reused_without_images(
    tiny: TinyVit, fp32_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranges = tmp_path / "ranges.json"
    first = quantize_static_int8(fp32_onnx, tmp_path / "a.onnx", tiny.source_images[:16], ranges=ranges)
    assert ranges.exists() and first["nodes_quantized"] == {"MatMul": 16}
    matmul = next(n.name for n in onnx.load(str(tmp_path / "a.onnx")).graph.node if n.op_type == "MatMul")

    def no_calibration(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("calibrated again")

    monkeypatch.setattr(sys.modules["onnxruntime.quantization.quantize"], "create_calibrator", no_calibration)
    again = quantize_static_int8(fp32_onnx, tmp_path / "b.onnx", None, ranges=ranges, keep_float_nodes=[matmul])
    assert again["nodes_quantized"] == {"MatMul": 15} and again["calibration_images"] == 0
    with pytest.raises(EdgepruneError, match="no calibration images"):
        quantize_static_int8(fp32_onnx, tmp_path / "c.onnx", None, ranges=tmp_path / "missing.json")


def test_dynamic_int8_quantizes_every_linear_layer(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    info = quantize_dynamic_int8(fp32_onnx, tmp_path / "d.onnx")
    assert info["nodes_quantized"] == {"MatMul": 16} and info["format"] == "dynamic"
    assert agreement(fp32_onnx, tmp_path / "d.onnx", tiny.source_images[:64])["top1_agreement"] >= 0.95


@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_sensitivity_ranks_every_quantized_matmul(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path, scheme: str) -> None:
    qdq = tmp_path / "q.onnx"
    quantize_static_int8(fp32_onnx, qdq, tiny.source_images[:16])
    found = sensitivity(qdq if scheme == "static" else fp32_onnx, tiny.source_images[:4], scheme)
    matmuls = {n.name for n in onnx.load(str(fp32_onnx)).graph.node if n.op_type == "MatMul"}
    assert len(found) == 16 and set(found) <= matmuls
    # Relative output errors: positive, small (8-bit), not all alike.
    assert all(0 < e < 0.5 for e in found.values()) and max(found.values()) > 1.5 * min(found.values())


def test_dynamic_sensitivity_counts_the_weights_quantization(
    tiny: TinyVit, fp32_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With activations left exact, what remains is the error of the int8 weights: never nothing."""
    monkeypatch.setattr(sys.modules["edgeprune.export.int8"], "_fake_dynamic", lambda x: x)
    found = sensitivity(fp32_onnx, tiny.source_images[:2], "dynamic")
    assert len(found) == 16 and all(0 < e < 0.05 for e in found.values())


def test_the_guard_keeps_the_most_sensitive_matmuls_float_until_the_target(
    tiny: TinyVit, fp32_onnx: Path, tmp_path: Path
) -> None:
    """A coarse INT8 (per-tensor weights, 4 calibration images) misses a strict target; the guard keeps the MatMuls
    that hurt most in float, doubling their number, until it agrees. (The pipeline judges on source images; here
    the sketches, whose near-tied logits make the tiny model's INT8 disagree at all.)"""
    guard_images = tiny.target_images

    def coarse(out: Path, keep) -> dict:  # type: ignore[no-untyped-def]
        return quantize_static_int8(fp32_onnx, out, tiny.source_images[:4], per_channel=False, keep_float_nodes=keep)

    result = guard("static", coarse, fp32_onnx, guard_images, tmp_path, target=1.0, max_float_share=1.0, patience=16)
    assert result.agreement == 1.0
    assert result.tries[0]["kept_float"] == 0 and result.tries[0]["agreement"] < 1.0
    counts = [t["kept_float"] for t in result.tries]
    assert counts == sorted(counts) and 0 < len(result.kept_float) == counts[-1] <= 16
    # The ones kept float are the most sensitive ones.
    ranking = sensitivity(tmp_path / "static-0.onnx", guard_images[:8])
    assert set(result.kept_float) == set(sorted(ranking, key=ranking.__getitem__, reverse=True)[: counts[-1]])
    kept = [n for n in onnx.load(str(result.path)).graph.node if n.name in result.kept_float]
    assert kept and all(n.op_type == "MatMul" for n in kept)

    # By default at most a quarter of the MatMuls stay float (4 of 16): 1, 2, then 4, and the best try is kept.
    capped = guard("static", coarse, fp32_onnx, guard_images, tmp_path / "capped", target=1.0, patience=16)
    assert [t["kept_float"] for t in capped.tries] == [0, 1, 2, 4][: len(capped.tries)]
    assert capped.agreement == max(t["agreement"] for t in capped.tries) and len(capped.kept_float) <= 4
    # With patience 1 it stops at the first try that does not improve on the best so far.
    impatient = guard("static", coarse, fp32_onnx, guard_images, tmp_path / "impatient", target=1.0, patience=1)
    agreements = [t["agreement"] for t in impatient.tries]
    stopped_early = len(agreements) < len(capped.tries) or agreements[-1] <= max(agreements[:-1])
    assert stopped_early or impatient.agreement == 1.0
    assert all(a > max(agreements[:i]) for i, a in enumerate(agreements[:-1]) if i > 0)


def test_build_int8_measures_both_schemes_and_keeps_one(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    record = build_int8(fp32_onnx, out, tiny.source_images[:32], tiny.source_images[64:], batch_sizes=(1, 8))
    assert set(record["candidates"]) == {"static", "dynamic"}
    chosen = record["candidates"][record["scheme"]]
    assert chosen["agreement_on_source_images"] >= record["guard_target"] == 0.99
    for candidate in record["candidates"].values():
        assert set(candidate["p50_ms"]) == {"1", "8"} and all(v > 0 for v in candidate["p50_ms"].values())
    if all(c["reached_target"] for c in record["candidates"].values()):  # then the faster one at batch 1
        fastest = min(record["candidates"], key=lambda s: record["candidates"][s]["p50_ms"]["1"])
        assert record["scheme"] == fastest
    assert out.exists() and not list(tmp_path.glob(".*tmp*"))
    assert agreement(fp32_onnx, out, tiny.source_images[64:])["top1_agreement"] >= 0.99
    # The static candidate says which images calibrated it: the 32 source images.
    assert record["candidates"]["static"]["calibration_images"] == 32


def test_build_int8_refuses_what_it_cannot_do(tiny: TinyVit, fp32_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(EdgepruneError, match="unknown INT8 scheme"):
        build_int8(fp32_onnx, tmp_path / "x.onnx", tiny.source_images[:8], tiny.source_images[8:16], schemes=["qat"])
    empty = np.zeros((0, 3, 64, 64), np.float32)
    with pytest.raises(EdgepruneError, match="needs source-domain images"):
        build_int8(fp32_onnx, tmp_path / "x.onnx", tiny.source_images[:8], empty)
    assert not (tmp_path / "x.onnx").exists()
