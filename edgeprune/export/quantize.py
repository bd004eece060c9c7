"""Static INT8 quantization with onnxruntime (QDQ format), calibrated on source-domain images only.

What is quantized by default: the MatMul nodes, i.e. every linear layer of the transformer blocks (qkv, proj,
fc1, fc2) and attention's two batched matmuls. Everything else stays float: LayerNorm, Softmax, GELU (Erf), the
residual Adds, the patch-embedding Conv and the classifier Gemm. On ViTs the float ops are where INT8 hurts
(LayerNorm and Softmax statistics, the residual stream's outliers) while they cost little time, and the first and
last layers are the most sensitive ones; the MatMuls are where the time goes. Q/DQ pairs sit on the MatMuls' inputs
only (their float outputs are not re-quantized). Weights are per-channel symmetric INT8, activations per-tensor
symmetric INT8 (zero point 0), which is what TensorRT's explicit quantization needs, so the same QDQ file serves
onnxruntime's CPU provider and `trtexec`.

The calibration images must come from the SOURCE domains only (the training domains): calibrating on the held-out
domain would leak it into the model and void the domain-generalisation result the benchmark measures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgeprune.errors import EdgepruneError
from edgeprune.export.compare import compare_logits
from edgeprune.export.runners import OrtRunner
from edgeprune.workspace import atomic_path

DEFAULT_QUANTIZE_OPS: tuple[str, ...] = ("MatMul",)
DEFAULT_KEEP_FLOAT_OPS: tuple[str, ...] = (
    "LayerNormalization",
    "Softmax",
    "Gelu",
    "Erf",
    "Add",
    "Mul",
    "Div",
    "Sqrt",
    "Pow",
    "ReduceMean",
    "Conv",  # patch embedding: first layer, under 1% of a ViT's MACs
    "Gemm",  # classifier head: last layer, negligible time
)
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs warnings on the root logger and prints histogram progress to stdout."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _images(calibration: Iterable[np.ndarray] | np.ndarray) -> Iterator[np.ndarray]:
    """One (1, C, H, W) float32 array at a time from an (N, C, H, W) array or an iterable of such batches.

    Feeding single images keeps every calibration run the same shape, which the histogram calibrators need.
    """
    batches = [calibration] if isinstance(calibration, np.ndarray) else calibration
    for batch in batches:
        array = np.asarray(batch, dtype=np.float32)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise EdgepruneError(f"calibration images must be (N, C, H, W) arrays, got shape {array.shape}")
        for image in array:
            yield np.ascontiguousarray(image[None])


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EdgepruneError(f"expected an ONNX model with one input, found {inputs}")
    return inputs[0]


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if name not in methods:
        raise EdgepruneError(f"unknown calibration method '{name}': choose one of {', '.join(CALIBRATION_METHODS)}")
    return methods[name]


def quantized_nodes(model: onnx.ModelProto) -> Counter[str]:
    """Op types of the nodes that consume at least one DequantizeLinear output, counted."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return Counter(
        n.op_type
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dequantized.intersection(n.input)
    )


def is_qdq_model(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def quantize_static_int8(
    fp32_onnx: Path,
    out: Path,
    calibration: Iterable[np.ndarray] | np.ndarray,
    *,
    per_channel: bool = True,
    quantize_ops: Sequence[str] = DEFAULT_QUANTIZE_OPS,
    keep_float_ops: Sequence[str] = DEFAULT_KEEP_FLOAT_OPS,
    method: str = "minmax",
    symmetric_activations: bool = True,
    quantize_outputs: bool = False,
    weight_matmuls_only: bool = True,
) -> dict[str, Any]:
    """Write `out`, a QDQ INT8 copy of `fp32_onnx` calibrated on `calibration` (source-domain images only).

    `calibration` is an (N, C, H, W) float32 array, or an iterable of such batches, preprocessed exactly as the
    model's inputs. `quantize_ops` are the op types to quantize, less any in `keep_float_ops`; every node of a
    `keep_float_ops` type is also excluded by name. `method` is "minmax" (default: fast, memory-flat),
    "percentile" or "entropy" (these two hold every calibration activation in memory: keep N small).
    `quantize_outputs=False` puts Q/DQ on the inputs of the quantized ops only (TensorRT's recommended placement;
    onnxruntime then runs them as integer matmuls with float outputs): on the test ViT it cut the largest logit
    error about threefold and ran faster on the CPU than also re-quantizing their outputs.
    `weight_matmuls_only` leaves the attention products (Q @ K^T, softmax @ V: two activations, no weight) in
    float: their inputs, softmax probabilities above all, lose the most in int8.
    Returns a description of what was done.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate_method = _calibration_method(method)
    op_types = [op for op in dict.fromkeys(quantize_ops) if op not in keep_float_ops]
    if not op_types:
        raise EdgepruneError("nothing to quantize: every op type in quantize_ops is also in keep_float_ops")
    source = onnx.load(str(fp32_onnx))
    input_name = _input_name(source)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = _images(calibration)
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.images, None)
            if image is None:
                return None
            self.count += 1
            return {input_name: image}

    reader = Reader()
    with tempfile.TemporaryDirectory(prefix="edgeprune-quant-") as work, _quiet(), atomic_path(out) as tmp:
        model_path, preprocessed = Path(work) / "preprocessed.onnx", True
        try:  # symbolic shape inference + constant folding: the quantizer's recommended first step
            quant_pre_process(str(fp32_onnx), str(model_path), skip_symbolic_shape=False)
        except Exception:  # optional step: quantize the model as exported when it fails
            model_path, preprocessed = fp32_onnx, False
        model = onnx.load(str(model_path))
        excluded = [n.name for n in model.graph.node if n.op_type in keep_float_ops]
        if weight_matmuls_only:
            constants = {i.name for i in model.graph.initializer}
            constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
            excluded += [
                n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)
            ]
        try:
            quantize_static(
                str(model_path),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                nodes_to_exclude=excluded,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=calibrate_method,
                extra_options={
                    "ActivationSymmetric": symmetric_activations,
                    "WeightSymmetric": True,
                    "OpTypesToExcludeOutputQuantization": [] if quantize_outputs else op_types,
                },
            )
            if reader.count == 0:
                raise EdgepruneError("no calibration images were given: INT8 calibration needs source-domain images")
            onnx.checker.check_model(str(tmp))
        except ValueError as exc:
            if reader.count == 0:
                raise EdgepruneError(
                    "no calibration images were given: INT8 calibration needs source-domain images"
                ) from None
            raise EdgepruneError(f"onnxruntime could not quantize {fp32_onnx.name}: {exc}") from None
    quantized = quantized_nodes(onnx.load(str(out)))
    kept = Counter(n.op_type for n in model.graph.node if n.op_type in keep_float_ops)
    return {
        "format": "QDQ",
        "activations": f"int8 per-tensor {'symmetric' if symmetric_activations else 'asymmetric'}",
        "weights": f"int8 {'per-channel' if per_channel else 'per-tensor'} symmetric",
        "outputs_quantized": quantize_outputs,
        "attention_products_quantized": not weight_matmuls_only,
        "calibration_method": method,
        "calibration_images": reader.count,
        "op_types_quantized": op_types,
        "nodes_quantized": dict(sorted(quantized.items())),
        "nodes_kept_float": dict(sorted(kept.items())),
        "preprocessed": preprocessed,
        "onnxruntime": ort.__version__,
    }


def agreement(
    reference_onnx: Path,
    candidate_onnx: Path,
    images: np.ndarray,
    *,
    threads: int | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Top-1 agreement and logit differences of `candidate_onnx` against `reference_onnx` on onnxruntime CPU."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise EdgepruneError(f"agreement needs a non-empty (N, C, H, W) array of images, got shape {images.shape}")
    with (
        OrtRunner(reference_onnx, threads=threads) as reference,
        OrtRunner(candidate_onnx, threads=threads) as candidate,
    ):
        batches = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
        return compare_logits((reference.infer(x), candidate.infer(x)) for x in batches).to_json()
