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
domain would leak it into the model and void the domain-generalisation result the benchmark measures. The
quantization record lists every image it was calibrated on (`calibration_sha256`: a digest per image, see
`image_digest`; and, where the caller names them, `calibration_sources` and their `calibration_domains`), so that
this can be checked against the images actually used.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
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
CALIBRATION_CHUNK = 8  # images whose activations the calibrator holds at once


@contextlib.contextmanager
def quiet() -> Iterator[None]:
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


class _Calibration:
    """The calibration images and a record of each image actually read, as an onnxruntime calibration data reader.

    onnxruntime's strided calibration reads them `stride` at a time (`set_range`), folding each chunk's activations
    into its histograms before the next: the calibrator holds the activations of one chunk, never of the whole set.
    `digests` holds, in reading order, the sha256 (first 16 hex digits) of each image's float32 bytes as fed to the
    model: anyone can preprocess a set of images the same way and check which of them were, or were not, used.
    """

    def __init__(
        self, calibration: Iterable[np.ndarray] | np.ndarray, input_name: str, sources: Sequence[str] | None
    ) -> None:
        self.images = list(_images(calibration))
        self.input_name = input_name
        self.sources = None if sources is None else list(sources)
        self.digests: list[str] = []
        self.combined = hashlib.sha256()
        self.position, self.end = 0, len(self.images)

    @property
    def count(self) -> int:
        return len(self.digests)

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.images))

    def stride(self, chunk: int = CALIBRATION_CHUNK) -> int:
        """The largest chunk of at most `chunk` images that divides the set (onnxruntime needs equal chunks)."""
        count = len(self.images)
        return max(d for d in range(1, min(count, chunk) + 1) if count % d == 0)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.end:
            return None
        image = self.images[self.position]
        self.position += 1
        self.digests.append(image_digest(image))
        self.combined.update(image.tobytes())
        return {self.input_name: image}

    def record(self) -> dict[str, Any]:
        """What the quantization record says about the images it was calibrated on."""
        record: dict[str, Any] = {
            "calibration_sha256": self.digests,
            "calibration_set_sha256": self.combined.hexdigest(),
        }
        if self.sources is not None:
            if len(self.sources) != self.count:
                raise EdgepruneError(
                    f"{len(self.sources)} calibration sources were named for {self.count} calibration images"
                )
            record["calibration_sources"] = self.sources
            record["calibration_domains"] = sorted({PurePosixPath(s).parts[0] for s in self.sources})
        return record


def image_digest(image: np.ndarray) -> str:
    """The identity of one preprocessed image: sha256 of its float32 C-order bytes, first 16 hex digits.

    A (C, H, W) image and the same image as a (1, C, H, W) batch give the same digest.
    """
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()[:16]


def constant_names(model: onnx.ModelProto) -> set[str]:
    """Tensors that are initializers or Constant outputs (a MatMul reading one has a constant weight)."""
    return {i.name for i in model.graph.initializer} | {
        o for n in model.graph.node if n.op_type == "Constant" for o in n.output
    }


def _excluded_nodes(model: onnx.ModelProto, keep_float_ops: Sequence[str], weight_matmuls_only: bool) -> list[str]:
    """Names of the nodes left in float: every `keep_float_ops` node and, optionally, activation-only MatMuls."""
    excluded = [n.name for n in model.graph.node if n.op_type in keep_float_ops]
    if weight_matmuls_only:
        constants = constant_names(model)
        excluded += [
            n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)
        ]
    return excluded


_PREPROCESSED = "edgeprune.quant_preprocessed"  # metadata key marking a graph `preprocessed` already wrote


def preprocessed(fp32_onnx: Path, work: Path) -> tuple[Path, bool]:
    """Symbolic shape inference + constant folding (the quantizer's recommended first step), where it works. A graph
    this function wrote is returned as it is, so a build that preprocesses once can quantize it again and again."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if any(p.key == _PREPROCESSED for p in onnx.load(str(fp32_onnx), load_external_data=False).metadata_props):
        return fp32_onnx, True
    model_path = work / "preprocessed.onnx"
    try:
        quant_pre_process(str(fp32_onnx), str(model_path), skip_symbolic_shape=False)
    except Exception:  # optional step: quantize the model as exported when it fails
        return fp32_onnx, False
    model = onnx.load(str(model_path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, _PREPROCESSED: "1"})
    onnx.save(model, str(model_path))
    return model_path, True


def ranges_cache_supported() -> bool:
    """Whether this onnxruntime's quantize_static can save and reuse calibrated ranges (onnxruntime >= 1.32)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def _quantize(
    model_path: Path, out: Path, reader: _Calibration | None, op_types: list[str], excluded: list[str], options: dict
) -> None:
    """onnxruntime's static QDQ quantization of `model_path` into `out`, checked; its errors as EdgepruneError.

    `options`: per_channel, calibrate_method, symmetric_activations, quantize_outputs, ranges (a calibration cache
    file: written after calibrating, read instead of calibrating when it exists) and name (the model's, for error
    messages). `reader` may be None when the ranges are cached.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cache: Path | None = options.get("ranges") if ranges_cache_supported() else None
    cached = cache is not None and cache.exists()
    extra_options = {
        "ActivationSymmetric": options["symmetric_activations"],
        "WeightSymmetric": True,
        "OpTypesToExcludeOutputQuantization": [] if options["quantize_outputs"] else op_types,
    }
    if not cached:
        if reader is None or len(reader) == 0:
            raise EdgepruneError("no calibration images were given: INT8 calibration needs source-domain images")
        extra_options["CalibStridedMinMax"] = reader.stride()  # any method: one chunk of activations at a time
    try:
        quantize_static(
            str(model_path),
            str(out),
            None if cached else reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_exclude=excluded,
            per_channel=options["per_channel"],
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=options["calibrate_method"],
            extra_options=extra_options,
            **({"calibration_cache_path": str(cache)} if cache is not None else {}),
        )
        onnx.checker.check_model(str(out))
    except ValueError as exc:
        raise EdgepruneError(f"onnxruntime could not quantize {options['name']}: {exc}") from None


def quantize_static_int8(
    fp32_onnx: Path,
    out: Path,
    calibration: Iterable[np.ndarray] | np.ndarray | None,
    *,
    per_channel: bool = True,
    quantize_ops: Sequence[str] = DEFAULT_QUANTIZE_OPS,
    keep_float_ops: Sequence[str] = DEFAULT_KEEP_FLOAT_OPS,
    keep_float_nodes: Sequence[str] = (),
    method: str = "minmax",
    symmetric_activations: bool = True,
    quantize_outputs: bool = False,
    weight_matmuls_only: bool = True,
    calibration_sources: Sequence[str] | None = None,
    ranges: Path | None = None,
) -> dict[str, Any]:
    """Write `out`, a QDQ INT8 copy of `fp32_onnx` calibrated on `calibration` (source-domain images only).

    `calibration` is an (N, C, H, W) float32 array, or an iterable of such batches, preprocessed exactly as the
    model's inputs. `quantize_ops` are the op types to quantize, less any in `keep_float_ops`; every node of a
    `keep_float_ops` type is also excluded by name, and so is every node named in `keep_float_nodes`. `method` is
    "minmax" (default), "percentile" or "entropy": every method streams, holding the activations of
    `CALIBRATION_CHUNK` images at a time (the histograms are updated chunk by chunk).
    `quantize_outputs=False` puts Q/DQ on the inputs of the quantized ops only (TensorRT's recommended placement;
    onnxruntime then runs them as integer matmuls with float outputs): on the test ViT it cut the largest logit
    error about threefold and ran faster on the CPU than also re-quantizing their outputs.
    `weight_matmuls_only` leaves the attention products (Q @ K^T, softmax @ V: two activations, no weight) in
    float: their inputs, softmax probabilities above all, lose the most in int8.
    `calibration_sources` optionally names each calibration image, in order (e.g. its path relative to the data
    set, `domain/class/file`): they are recorded with the domains they name (their first path component).
    `ranges`: a file for the calibrated ranges; where it exists (and this onnxruntime reads it) they are reused and
    `calibration` may be None, so the same model can be quantized again with other nodes kept float, cheaply.
    Returns a description of what was done, with the digests of the images calibrated on (see `image_digest`).
    """
    options = dict(name=fp32_onnx.name, calibrate_method=_calibration_method(method), per_channel=per_channel)
    options.update(symmetric_activations=symmetric_activations, quantize_outputs=quantize_outputs, ranges=ranges)
    op_types = [op for op in dict.fromkeys(quantize_ops) if op not in keep_float_ops]
    if not op_types:
        raise EdgepruneError("nothing to quantize: every op type in quantize_ops is also in keep_float_ops")
    input_name = _input_name(onnx.load(str(fp32_onnx)))
    reader = None if calibration is None else _Calibration(calibration, input_name, calibration_sources)
    with tempfile.TemporaryDirectory(prefix="edgeprune-quant-") as work, quiet(), atomic_path(out) as tmp:
        model_path, was_preprocessed = preprocessed(fp32_onnx, Path(work))
        model = onnx.load(str(model_path))
        excluded = _excluded_nodes(model, keep_float_ops, weight_matmuls_only) + list(keep_float_nodes)
        _quantize(model_path, tmp, reader, op_types, excluded, options)
        images = reader.record() if reader is not None and reader.count else {}
    quantized, kept = quantized_nodes(onnx.load(str(out))), Counter(n.op_type for n in model.graph.node)
    return {
        "format": "QDQ",
        "activations": f"int8 per-tensor {'symmetric' if symmetric_activations else 'asymmetric'}",
        "weights": f"int8 {'per-channel' if per_channel else 'per-tensor'} symmetric",
        "outputs_quantized": quantize_outputs,
        "attention_products_quantized": not weight_matmuls_only,
        "calibration_method": method,
        "calibration_images": reader.count if reader is not None else 0,
        "calibration_chunk": reader.stride() if reader is not None and len(reader) else None,
        "op_types_quantized": op_types,
        "nodes_quantized": dict(sorted(quantized.items())),
        "nodes_kept_float": {op: n for op, n in sorted(kept.items()) if op in keep_float_ops},
        "preprocessed": was_preprocessed,
        "onnxruntime": ort.__version__,
        **images,
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
