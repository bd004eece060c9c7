"""Where an engine's time goes, part by part: onnxruntime's profiler on the engine (or the per-layer profile that
trtexec wrote beside a TensorRT engine) and torch's FLOP counter on the model, so that a report can show which parts
of a pruned model sped up, which did not, and by how much per MAC.

Parts follow the model's modules: `embedding` (patch embedding, position embedding), `block N attention`
(qkv, the attention products, softmax, projection), `block N MLP`, `block N other` (norms, residual adds), `head`
(final norm, pooling, classifier); what onnxruntime renamed beyond recognition is `other`.
"""

from __future__ import annotations

import bisect
import json
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeprune.errors import EdgepruneError
from edgeprune.models.attention import unfused_attention
from edgeprune.prune.counting import input_size
from edgeprune.results import LatencyBreakdown, PartTiming

_BLOCK = re.compile(r"blocks\.(\d+)[./](attn|mlp)?")
_EMBEDDING = ("patch_embed", "pos_embed", "cls_token", "pos_drop", "rel_pos")
_HEAD = ("head", "fc_norm", "norm", "pool", "reducemean")


def part_of(name: str) -> str:
    """The part of the model an ONNX node or torch module name belongs to."""
    block = _BLOCK.search(name)
    if block:
        kind = {"attn": "attention", "mlp": "MLP"}.get(block.group(2) or "", "other")
        return f"block {int(block.group(1))} {kind}"
    words = [w for w in re.split(r"[/.]", name.lower()) if w]
    if any(w.startswith(_EMBEDDING) for w in words):
        return "embedding"
    if words and words[0] in ("add", "concat", "expand", "gather", "slice", "unsqueeze"):
        return "embedding"  # the position embedding's add and the class token's concat sit at the top level
    if any(w.startswith(_HEAD) for w in words):
        return "head"
    return "other"


def part_order(part: str) -> tuple[int, int, int]:
    block = re.match(r"block (\d+) (.*)", part)
    if block:
        return (1, int(block.group(1)), ("attention", "MLP", "other").index(block.group(2)))
    return ({"embedding": 0, "head": 2}.get(part, 3), 0, 0)


@torch.no_grad()
def macs_by_part(model: nn.Module) -> dict[str, int]:
    """MACs of one image per part (attention and MLP of every block, embedding, head)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, unfused_attention(model):
        model(torch.zeros(1, 3, *input_size(model), device=next(model.parameters()).device))
    model.train(was_training)
    macs: dict[str, int] = defaultdict(int)
    for module, counts in counter.get_flop_counts().items():
        path = module.split(".")[1:]  # drop the root's class name
        leaf = ".".join(path)
        if path and (re.fullmatch(r"blocks\.\d+\.(attn|mlp)", leaf) or leaf in ("patch_embed", "head")):
            macs[part_of(leaf)] += sum(counts.values()) // 2
    return dict(macs)


def profile_onnx(
    paths: Sequence[Path],
    batch: np.ndarray,
    threads: int | None,
    runs: int = 20,
    warmup: int = 5,
    optimization: str = "all",
) -> list[tuple[dict[str, float], dict[str, float]]]:
    """Per model in `paths`: (ms per op type, ms per part) of one inference on `batch`, from onnxruntime's profiler
    on the CPU provider, each node's kernel time summed per run and averaged over the middle half of `runs` runs
    after `warmup`. The models take turns run by run, so that a machine that slows down or speeds up (other work,
    clocks) weighs on every model alike."""
    import onnxruntime as ort

    from edgeprune.export.runners import session_options

    with tempfile.TemporaryDirectory(prefix="edgeprune-profile-") as folder:
        sessions, optimized = [], []
        for index, path in enumerate(paths):
            optimized.append(Path(folder) / f"optimized-{index}.onnx")
            options = session_options(threads, optimization, optimized_model_path=optimized[-1])
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(folder) / f"ort-{index}")
            sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        x = np.ascontiguousarray(batch, dtype=np.float32)
        for _ in range(warmup + runs):
            for session in sessions:
                session.run(None, {session.get_inputs()[0].name: x})
        traces = [json.loads(Path(session.end_profiling()).read_text()) for session in sessions]
        return [_per_run_times(events, warmup, node_parts(o)) for events, o in zip(traces, optimized, strict=True)]


def node_parts(optimized: Path) -> dict[str, str]:
    """The part of every node of onnxruntime's optimised graph. A node that a fusion renamed (`BiasGelu_token_97`)
    belongs where the tensors it reads were made: its part is that of its inputs' producers."""
    import onnx

    graph = onnx.load(str(optimized), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    parts: dict[str, str] = {}

    def resolve(node: onnx.NodeProto, depth: int = 0) -> str:
        if node.name in parts:
            return parts[node.name]
        part = part_of(node.name)
        if part == "other" and depth < 8:
            for name in node.input:
                source = producer.get(name)
                guess = resolve(source, depth + 1) if source is not None else part_of(name)
                if guess != "other":
                    part = guess
                    break
        parts[node.name] = part
        return part

    for node in graph.node:
        resolve(node)
    return parts


def _per_run_times(
    events: list[dict], warmup: int, parts: dict[str, str] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[warmup:]
    per_run_op: list[dict[str, float]] = [defaultdict(float) for _ in windows]
    per_run_part: list[dict[str, float]] = [defaultdict(float) for _ in windows]
    starts = [w[0] for w in windows]
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        index = _window_of(event["ts"], starts, windows)
        if index is None:
            continue
        ms = event["dur"] / 1e3
        per_run_op[index][event.get("args", {}).get("op_name", "?")] += ms
        node = event["name"].removesuffix("_kernel_time")
        per_run_part[index][(parts or {}).get(node) or part_of(node)] += ms
    middle = _middle_runs([sum(run.values()) for run in per_run_op])
    return _mean_over(per_run_op, middle), _mean_over(per_run_part, middle)


def _window_of(ts: float, starts: list[float], windows: list[tuple[float, float]]) -> int | None:
    index = bisect.bisect_right(starts, ts) - 1
    if index >= 0 and ts <= windows[index][1]:
        return index
    return None


def _middle_runs(totals: list[float]) -> list[int]:
    """The runs of the middle half by total kernel time (at least one): robust to a noisy machine, and the same
    runs for every table, so that per op type and per part add up to the same total."""
    order = sorted(range(len(totals)), key=totals.__getitem__)
    quarter = len(order) // 4
    return order[quarter : len(order) - quarter] or order


def _mean_over(per_run: list[dict[str, float]], runs: list[int]) -> dict[str, float]:
    keys = {k for i in runs for k in per_run[i]}
    return {k: statistics.fmean(per_run[i].get(k, 0.0) for i in runs) for k in keys}


TRT_PROFILE_SUFFIX = ".profile.json"  # next to an engine: `trtexec --exportProfile` (the bundle's build.sh)


def trt_profile_path(engine: Path) -> Path:
    return engine.with_name(engine.name + TRT_PROFILE_SUFFIX)


def read_trt_profile(path: Path) -> dict[str, float]:
    """ms per part of one inference from `trtexec --exportProfile`: a list holding `{"count": N}`, then one
    `{"name", "timeMs", "averageMs", ...}` per layer. A fused layer ("A + B", "{ForeignNode[A...B]}") counts
    for the part of the first node it names."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgepruneError(f"cannot read the TensorRT profile {path}: {exc}") from None
    parts: dict[str, float] = defaultdict(float)
    for row in rows:
        if not isinstance(row, dict) or "name" not in row:
            continue
        first = re.split(r" \+ |\.\.\.", row["name"].removeprefix("{ForeignNode[").rstrip("]}"))[0]
        parts[part_of(first)] += float(row.get("averageMs", 0.0))
    return dict(parts)


def trt_latency_breakdown(engines: dict[str, Path], models: dict[str, nn.Module]) -> LatencyBreakdown | None:
    """The same table for TensorRT engines, from the profiles build.sh wrote beside them (None where absent)."""
    profiles = {name: trt_profile_path(engine) for name, engine in engines.items()}
    if not all(profiles[k].is_file() for k in ("baseline", "model")):
        return None
    base_parts, parts = read_trt_profile(profiles["baseline"]), read_trt_profile(profiles["model"])
    return LatencyBreakdown(
        source="trtexec --exportProfile (TensorRT, build.sh), average ms per layer",
        runs=50,
        batch=0,
        threads=None,
        by_part=_part_rows(base_parts, parts, models),
        by_op=[],
    )


def _part_rows(base_parts: dict[str, float], parts: dict[str, float], models: dict[str, nn.Module]) -> list[PartTiming]:
    base_macs, macs = macs_by_part(models["baseline"]), macs_by_part(models["pruned"])
    return [
        PartTiming(
            name=name,
            baseline_ms=base_parts.get(name, 0.0),
            pruned_ms=parts.get(name, 0.0),
            baseline_macs=base_macs.get(name),
            pruned_macs=macs.get(name),
        )
        for name in sorted(set(base_parts) | set(parts), key=part_order)
    ]


def latency_breakdown(
    engines: dict[str, Path],
    models: dict[str, nn.Module],
    batch: np.ndarray,
    threads: int | None,
    runs: int = 20,
) -> LatencyBreakdown:
    """Baseline vs pruned, per op type and per part, from the two ONNX engines (`engines["baseline"]`,
    `engines["model"]`) and the two torch models (`models["baseline"]`, `models["pruned"]`)."""
    (base_ops, base_parts), (ops, parts) = profile_onnx([engines["baseline"], engines["model"]], batch, threads, runs)
    by_part = _part_rows(base_parts, parts, models)
    by_op = [
        PartTiming(name=name, baseline_ms=base_ops.get(name, 0.0), pruned_ms=ops.get(name, 0.0))
        for name in sorted(set(base_ops) | set(ops), key=lambda n: -base_ops.get(n, 0.0))
    ]
    return LatencyBreakdown(
        source="onnxruntime profiler (CPU provider), kernel time per inference, mean of the middle half of runs",
        runs=runs,
        batch=int(batch.shape[0]),
        threads=threads,
        by_part=by_part,
        by_op=by_op,
    )
