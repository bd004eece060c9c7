"""INT8 for onnxruntime's CPU that is fast and faithful: static (calibrated QDQ) or dynamic, chosen by measurement.

Both schemes quantize the same MatMuls (the linear layers; see `quantize.DEFAULT_QUANTIZE_OPS`). Each goes through
an accuracy guard: its top-1 agreement with fp32 is measured on source-domain images (never the held-out domain,
never the calibration images), and while it is below the target the MatMuls whose quantization costs the most stay
float, 1, 2, 4, ... of them (at most a quarter), ranked by how far quantizing each alone moves its output
(`sensitivity`). Of the schemes that reach the target, the one faster on this CPU at the profile's batch sizes is
kept; where none reaches it, the one that agrees best, and the build record says so.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeprune.errors import EdgepruneError
from edgeprune.export.ort_engine import time_variants
from edgeprune.export.quantize import (
    agreement,
    constant_names,
    preprocessed,
    quantize_static_int8,
    quiet,
    ranges_cache_supported,
)
from edgeprune.export.runners import OrtRunner
from edgeprune.workspace import atomic_path

GUARD_AGREEMENT = 0.99  # top-1 agreement with fp32 on source images that the guard keeps float MatMuls for
MAX_FLOAT_SHARE = 0.25  # of the quantizable MatMuls that the guard may keep float
SCHEMES = ("static", "dynamic")
Quantize = Callable[[Path, Sequence[str]], dict[str, Any]]  # (out, MatMuls kept float) -> what was done


def quantize_dynamic_int8(fp32_onnx: Path, out: Path, keep_float_nodes: Sequence[str] = ()) -> dict[str, Any]:
    """onnxruntime's dynamic INT8 (activation ranges measured per inference, no calibration) of the MatMuls with a
    constant weight, in the graph static INT8 quantizes (see `quantize.preprocessed`: the classifier is a float
    Gemm there); onnxruntime's CPU provider fuses each with its bias into one DynamicQuantizeMatMul. Weights are
    quantized per tensor: per output channel measured no better on the pruned DeiT-Tiny of PACS (top-1 agreement
    with fp32 on all 3,929 held-out sketches 0.9667 against 0.9631, on 2,300 source images 0.9926 against 0.9952)
    at the same latency."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="edgeprune-quant-") as work, quiet(), atomic_path(out) as tmp:
        source, _ = preprocessed(fp32_onnx, Path(work))
        model = onnx.load(str(source))
        constants = constant_names(model)
        # The classifier stays float, as in static INT8 (the dynamic quantizer first turns Gemm into '<name>_MatMul').
        kept = [f"{n.name}_MatMul" for n in model.graph.node if n.op_type == "Gemm"]
        kept += [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]
        quantize_dynamic(
            str(source),
            str(tmp),
            op_types_to_quantize=["MatMul"],
            per_channel=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept + list(keep_float_nodes),
        )
    quantized = sum(n.op_type == "MatMulInteger" for n in onnx.load(str(out)).graph.node)
    return {
        "format": "dynamic",
        "activations": "uint8 per-tensor asymmetric, range measured per inference",
        "weights": "int8 per-tensor symmetric",
        "nodes_quantized": {"MatMul": quantized},
    }


@dataclass
class _Probe:
    """One MatMul to rank: the tensors to read (its float input, and for static QDQ that input as quantized and the
    dequantized weight), or for dynamic its weight, float and as quantized per tensor."""

    node: str
    activation: str
    quantized_activation: str | None = None
    weight: str | None = None
    weight_value: np.ndarray | None = None
    quantized_weight: np.ndarray | None = None


def _static_probes(qdq: onnx.ModelProto) -> list[_Probe]:
    producer = {o: n for n in qdq.graph.node for o in n.output}
    probes = []
    for node in qdq.graph.node:
        if node.op_type != "MatMul":
            continue
        dq_a, dq_w = (producer.get(i) for i in node.input[:2])
        if not (dq_a and dq_w and dq_a.op_type == dq_w.op_type == "DequantizeLinear"):
            continue
        quantize = producer.get(dq_a.input[0])
        if quantize is not None and quantize.op_type == "QuantizeLinear":
            probes.append(_Probe(node.name, quantize.input[0], node.input[0], node.input[1]))
    return probes


def _dynamic_probes(fp32: onnx.ModelProto) -> list[_Probe]:
    weights = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    probes = []
    for node in fp32.graph.node:
        w = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if w is not None and w.dtype == np.float32:
            scale = float(np.abs(w).max()) / 127 or 1.0  # per tensor, as quantize_dynamic_int8 does
            quantized = np.round(w / scale) * scale
            probes.append(_Probe(node.name, node.input[0], weight_value=w, quantized_weight=quantized))
    return probes


def _fake_dynamic(x: np.ndarray) -> np.ndarray:
    """x as onnxruntime's DynamicQuantizeLinear sees it: uint8, asymmetric, the range of this very tensor."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def sensitivity(model_onnx: Path, images: np.ndarray, scheme: str = "static") -> dict[str, float]:
    """For each MatMul the scheme quantizes: ||x W - q(x) q(W)|| / ||x W|| over `images`, one at a time (batch 1).

    "static": `model_onnx` is the calibrated QDQ model; x is a MatMul's float input there, q(x) that input after its
    Q/DQ pair and W = q(W) its dequantized weight. "dynamic": `model_onnx` is the fp32 model; q(x) is x quantized
    over its own range and q(W) the weight quantized per tensor, as onnxruntime's dynamic INT8 does. How far
    quantizing that layer alone moves its output.
    """
    model = onnx.load(str(model_onnx))
    probes = _static_probes(model) if scheme == "static" else _dynamic_probes(model)
    if not probes:
        return {}
    read = (t for p in probes for t in (p.activation, p.quantized_activation, p.weight) if t is not None)
    declared = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in dict.fromkeys(read) if t not in declared)
    error = dict.fromkeys((p.node for p in probes), 0.0)
    signal = dict.fromkeys((p.node for p in probes), 0.0)
    with tempfile.TemporaryDirectory(prefix="edgeprune-probe-") as work:
        path = Path(work) / "probe.onnx"
        onnx.save(model, str(path))
        with OrtRunner(path, optimization="disable") as runner:
            names = [o.name for o in runner.session.get_outputs()]
            for image in np.asarray(images, np.float32):
                values = dict(zip(names, runner.session.run(None, {runner.input_name: image[None]}), strict=True))
                for p in probes:
                    x = values[p.activation]
                    if p.weight_value is None:
                        reference = x @ values[p.weight]
                        quantized = values[p.quantized_activation] @ values[p.weight]
                    else:
                        reference, quantized = x @ p.weight_value, _fake_dynamic(x) @ p.quantized_weight
                    error[p.node] += float(np.square(reference - quantized).sum())
                    signal[p.node] += float(np.square(reference).sum())
    return {node: (error[node] / signal[node]) ** 0.5 if signal[node] else 0.0 for node in error}


@dataclass
class GuardedInt8:
    """One scheme after the guard: its file, what quantizing did, and how it reached (or missed) the target."""

    scheme: str
    path: Path
    info: dict[str, Any]
    agreement: float  # top-1 agreement with fp32 on the guard's source images
    kept_float: dict[str, float] = field(default_factory=dict)  # MatMul -> its sensitivity
    tries: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 by batch size

    def record(self, target: float) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "agreement_on_source_images": self.agreement,
            "reached_target": self.agreement >= target,
            "matmuls_kept_float": self.kept_float,
            "tries": self.tries,
            "p50_ms": self.latency_ms,
            **self.info,
        }


def guard(
    scheme: str,
    quantize: Quantize,
    fp32_onnx: Path,
    guard_images: np.ndarray,
    work: Path,
    *,
    target: float = GUARD_AGREEMENT,
    probe_images: int = 8,
    max_float_share: float = MAX_FLOAT_SHARE,
    patience: int = 2,
) -> GuardedInt8:
    """Quantize every MatMul; while agreement with fp32 on `guard_images` is below `target`, keep the most
    sensitive 1, 2, 4, ... MatMuls float (ranked on the first `probe_images` of them), at most `max_float_share`
    of them: beyond that INT8 no longer pays for its quantize / dequantize steps. Stops after `patience` tries in a
    row that do not agree better than the best so far (each try is a quantization and a pass over `guard_images`).
    Keeps the try that agreed best (the fewest float MatMuls among equals)."""

    def attempt(keep: list[str]) -> tuple[Path, dict[str, Any], float]:
        out = work / f"{scheme}-{len(keep)}.onnx"
        info = quantize(out, keep)
        return out, info, agreement(fp32_onnx, out, guard_images)["top1_agreement"]

    path, info, agreed = attempt([])
    tries = [{"kept_float": 0, "agreement": agreed}]
    best: tuple[float, list[str], Path, dict[str, Any]] = (agreed, [], path, info)
    ranking: dict[str, float] = {}
    if agreed < target:
        ranking = sensitivity(path if scheme == "static" else fp32_onnx, guard_images[:probe_images], scheme)
        ordered = sorted(ranking, key=ranking.__getitem__, reverse=True)
        limit, count, stale = int(len(ordered) * max_float_share), 1, 0
        while best[0] < target and count <= limit and stale < patience:
            keep = ordered[:count]
            path, info, agreed = attempt(keep)
            tries.append({"kept_float": len(keep), "agreement": agreed})
            stale = 0 if agreed > best[0] else stale + 1
            if agreed > best[0]:
                best = (agreed, keep, path, info)
            count = limit if count < limit < 2 * count else 2 * count
    agreed, keep, path, info = best
    return GuardedInt8(scheme, path, info, agreed, {node: ranking[node] for node in keep}, tries)


def build_int8(
    fp32_onnx: Path,
    out: Path,
    calibration: np.ndarray,
    guard_images: np.ndarray,
    *,
    target: float = GUARD_AGREEMENT,
    schemes: Sequence[str] = SCHEMES,
    batch_sizes: Sequence[int] = (1,),
    threads: int | None = None,
    method: str = "percentile",
) -> dict[str, Any]:
    """Write `out`, the INT8 model of `fp32_onnx` for this CPU; return what was measured and why it was chosen.

    `calibration` (source-domain training images) calibrates the static scheme; `guard_images` (other
    source-domain images) judge agreement with fp32. Latency is the p50 at each of `batch_sizes`, all schemes
    timed in alternating rounds; with no batch sizes nothing is timed and the first scheme of `schemes` that
    reaches the target is kept.
    """
    unknown = sorted(set(schemes) - set(SCHEMES))
    if unknown or not schemes:
        raise EdgepruneError(f"unknown INT8 scheme(s) {unknown}: choose from {', '.join(SCHEMES)}")
    if len(guard_images) == 0:
        raise EdgepruneError("the INT8 guard needs source-domain images to measure agreement with fp32")
    with tempfile.TemporaryDirectory(prefix="edgeprune-int8-") as folder:
        work = Path(folder)
        source, _ = preprocessed(fp32_onnx, work)  # both schemes name the MatMuls of this graph
        ranges = work / "ranges.json"
        calibrated: dict[str, Any] = {}  # what the first static build says of its calibration images

        def static(path: Path, keep: Sequence[str]) -> dict[str, Any]:
            reuse = bool(calibrated) and ranges_cache_supported()
            info = quantize_static_int8(
                source,
                path,
                None if reuse else calibration,
                symmetric_activations=False,
                method=method,
                keep_float_nodes=keep,
                ranges=ranges,
            )
            if not calibrated:
                calibrated.update({k: v for k, v in info.items() if k.startswith("calibration")})
            return {**info, **calibrated}

        def dynamic(path: Path, keep: Sequence[str]) -> dict[str, Any]:
            return quantize_dynamic_int8(source, path, keep)

        makers: dict[str, Quantize] = {"static": static, "dynamic": dynamic}
        candidates = [guard(s, makers[s], source, guard_images, work, target=target) for s in schemes]
        timed = time_variants({c.scheme: c.path for c in candidates}, batch_sizes, threads) if batch_sizes else {}
        for c in candidates:
            c.latency_ms = timed.get(c.scheme, {})
        reached = [c for c in candidates if c.agreement >= target]
        if reached and not batch_sizes:
            chosen, reason = reached[0], f"not timed: the first scheme that reaches agreement {target}"
        elif reached:
            chosen = min(reached, key=lambda c: c.latency_ms[str(batch_sizes[0])])
            reason = f"fastest at batch {batch_sizes[0]} of the schemes that reach agreement {target}"
        else:
            chosen = max(candidates, key=lambda c: c.agreement)
            reason = f"no scheme reached agreement {target} on source images: the one that agrees best"
        with atomic_path(out) as tmp:
            shutil.copyfile(chosen.path, tmp)
    return {
        "scheme": chosen.scheme,
        "why": reason,
        "guard_target": target,
        "guard_images": len(guard_images),
        "candidates": {c.scheme: c.record(target) for c in candidates},
        **chosen.info,
    }
