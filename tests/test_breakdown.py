"""The latency breakdown: parts named from ONNX nodes and torch modules, per-run medians, MACs that add up."""

from __future__ import annotations

import pytest

from edgeprune.bench.breakdown import _per_run_times, macs_by_part, part_of
from edgeprune.models.loading import create_model
from edgeprune.models.registry import resolve_model
from edgeprune.prune.counting import count_macs


@pytest.mark.parametrize(
    ("name", "part"),
    [
        ("/blocks/blocks.3/attn/qkv/MatMul", "block 3 attention"),
        ("/blocks/blocks.10/mlp/fc2/Add", "block 10 MLP"),
        ("/blocks/blocks.0/norm1/LayerNormalization", "block 0 other"),
        ("/blocks/blocks.2/Add_1", "block 2 other"),
        ("/patch_embed/proj/Conv_output_0_nchwc", "embedding"),
        ("/Add", "embedding"),
        ("/Concat", "embedding"),
        ("/norm/LayerNormalization", "head"),
        ("/head/Gemm", "head"),
        ("/ReduceMean", "head"),
        ("blocks.1.attn", "block 1 attention"),
        ("ReorderOutput", "other"),
    ],
)
def test_parts_are_named_from_nodes_and_modules(name: str, part: str) -> None:
    assert part_of(name) == part


def _node(name: str, op: str, ts: int, dur: int) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_per_run_times_skip_warmup_and_average_the_middle_runs() -> None:
    events = []
    runs = [(900, 900), (100, 10), (300, 30), (200, 20), (5000, 10), (250, 25)]  # a warm-up, then 5 runs
    for run, (qkv_us, head_us) in enumerate(runs):
        start = run * 10_000
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": 9_000})
        events.append(_node("/blocks/blocks.0/attn/qkv/MatMul", "MatMul", start + 10, qkv_us))
        events.append(_node("/head/Gemm", "Gemm", start + 2_000, head_us))
    events.append(_node("/head/Gemm", "Gemm", 95_000, 5_000))  # outside every run: ignored
    by_op, by_part = _per_run_times(events, warmup=1)
    # totals 110, 330, 220, 5010, 275 us: the middle half (quarter = 1 run cut each side) is 220, 275, 330
    assert by_op == {"MatMul": pytest.approx(0.25), "Gemm": pytest.approx(0.025)}
    assert by_part == {"block 0 attention": pytest.approx(0.25), "head": pytest.approx(0.025)}


def test_macs_by_part_add_up_to_the_model() -> None:
    model = create_model(resolve_model("vit-micro"), 7, random_init=True)
    macs = macs_by_part(model)
    assert set(macs) == {"embedding", "head", *(f"block {i} {k}" for i in range(4) for k in ("attention", "MLP"))}
    assert sum(macs.values()) == count_macs(model)
    assert macs["block 0 MLP"] == 2 * 64 * 96 * 384  # fc1 and fc2 on 64 tokens


def test_trt_profiles_are_read_per_part(tmp_path) -> None:
    import json

    from edgeprune.bench.breakdown import read_trt_profile, trt_latency_breakdown, trt_profile_path

    engines = {"baseline": tmp_path / "baseline.engine", "model": tmp_path / "model.engine"}
    model = create_model(resolve_model("vit-micro"), 7, random_init=True)
    assert trt_latency_breakdown(engines, {"baseline": model, "pruned": model}) is None  # no profiles yet
    layers = [
        {"count": 50},
        {"name": "/patch_embed/proj/Conv", "timeMs": 5.0, "averageMs": 0.1, "percentage": 10},
        {"name": "/blocks/blocks.0/attn/qkv/MatMul + /blocks/blocks.0/attn/qkv/Add", "averageMs": 0.3},
        {"name": "{ForeignNode[/blocks/blocks.0/mlp/fc1/MatMul.../blocks/blocks.1/mlp/fc2/Add]}", "averageMs": 0.5},
        {"name": "Reformatting CopyNode for Input Tensor 0 to /head/Gemm", "averageMs": 0.01},
    ]
    for engine in engines.values():
        trt_profile_path(engine).write_text(json.dumps(layers))
    parts = read_trt_profile(trt_profile_path(engines["model"]))
    assert parts == {"embedding": 0.1, "block 0 attention": 0.3, "block 0 MLP": 0.5, "head": 0.01}
    breakdown = trt_latency_breakdown(engines, {"baseline": model, "pruned": model})
    assert [r.name for r in breakdown.by_part] == ["embedding", "block 0 attention", "block 0 MLP", "head"]
    assert breakdown.by_part[2].baseline_macs == 2 * 64 * 96 * 384 and breakdown.by_op == []
