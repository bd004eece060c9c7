"""onnxruntime CPU engines: the ONNX graph optimised offline by onnxruntime, with fused attention where it pays."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgeprune.bench.latency import measure_interleaved
from edgeprune.export.attention_fusion import ATTENTION_OP, fuse_attention
from edgeprune.export.runners import OrtRunner, session_options
from edgeprune.workspace import atomic_path

FUSED_PARITY = 1e-4  # max |logit difference| between the fused and the unfused graph on random inputs
FUSED_OPS = (ATTENTION_OP, "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu")


def optimise_for_cpu(source: Path, destination: Path) -> None:
    """Save onnxruntime's optimised graph; the 'extended' level stays portable across x86 and Arm CPUs."""
    with atomic_path(destination) as tmp:
        ort.InferenceSession(
            str(source),
            session_options(optimization="extended", optimized_model_path=tmp),
            providers=["CPUExecutionProvider"],
        )


def fused_op_counts(path: Path) -> dict[str, int]:
    counts = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def _max_difference(a: Path, b: Path, images: np.ndarray) -> float:
    with OrtRunner(a) as first, OrtRunner(b) as second:
        return float(np.abs(first.infer(images) - second.infer(images)).max())


def build_ort_cpu(
    source: Path, destination: Path, *, batch_sizes: Sequence[int] = (1,), threads: int | None = None
) -> dict[str, Any]:
    """`destination`: the optimised graph of `source`, with every attention fused into one onnxruntime operator
    (`attention_fusion`) if that graph computes the same logits and is faster at the first of `batch_sizes`.

    With no `batch_sizes` nothing is timed and the fused graph is kept when it computes the same logits (latency
    probes: one choice for all of them, not a timing per probe). Returns what was measured: fused op counts of
    each candidate, p50 per batch size, the parity of the fused graph, and the choice.
    """
    with tempfile.TemporaryDirectory(prefix="edgeprune-ort-") as folder:
        work = Path(folder)
        candidates = {"unfused": work / "unfused.onnx"}
        optimise_for_cpu(source, candidates["unfused"])
        model = onnx.load(str(source))
        fused = fuse_attention(model)
        record: dict[str, Any] = {"attention_fused": fused}
        if fused:
            onnx.save(model, str(work / "fused-source.onnx"))
            optimise_for_cpu(work / "fused-source.onnx", work / "fused.onnx")
            with OrtRunner(source) as runner:
                shape = [d or 2 for d in runner.input_shape]
            images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            record["fused_max_abs_diff"] = _max_difference(candidates["unfused"], work / "fused.onnx", images)
            if record["fused_max_abs_diff"] <= FUSED_PARITY:
                candidates["fused"] = work / "fused.onnx"
        record["fused_ops"] = {name: fused_op_counts(path) for name, path in candidates.items()}
        record["p50_ms"] = (
            time_variants(candidates, batch_sizes, threads) if len(candidates) > 1 and batch_sizes else {}
        )
        if record["p50_ms"]:
            chosen = min(candidates, key=lambda name: record["p50_ms"][name][str(batch_sizes[0])])
        else:
            chosen = "fused" if "fused" in candidates else "unfused"
        record["chosen"] = chosen
        with atomic_path(destination) as tmp:
            shutil.copyfile(candidates[chosen], tmp)
    return record


def time_variants(
    candidates: dict[str, Path], batch_sizes: Sequence[int], threads: int | None
) -> dict[str, dict[str, float]]:
    """p50 in ms of each ONNX file by batch size (as a string), all timed in alternating rounds."""
    runners = {name: OrtRunner(path, threads=threads) for name, path in candidates.items()}
    try:
        shape = next(iter(runners.values())).input_shape[1:]
        found: dict[str, dict[str, float]] = {name: {} for name in runners}
        for size in batch_sizes:
            batch = np.random.default_rng(0).standard_normal((size, *shape)).astype(np.float32)
            timed = measure_interleaved(
                {n: r.infer for n, r in runners.items()}, batch, warmup=2, iterations=20, rounds=4
            )
            for name in runners:
                found[name][str(size)] = timed[name]["p50"]
        return found
    finally:
        for runner in runners.values():
            runner.close()
