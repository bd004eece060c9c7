"""Attention fused into onnxruntime's MultiHeadAttention, per block, on pruned ViT / DeiT / BEiT graphs."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeprune.export.attention_fusion import fuse_attention
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.ort_engine import build_ort_cpu
from edgeprune.export.runners import OrtRunner
from edgeprune.models.attention import attention_modules
from tests.test_prune import FAMILIES, _pruned


@pytest.mark.parametrize("family", ["vit", "deit", "beit"])
def test_pruned_attention_fuses_with_each_blocks_own_head_count(family: str, tmp_path: Path) -> None:
    model, _ = _pruned(FAMILIES[family], metric="random", ratio=0.5, prune_heads=True, normalization="none")
    heads = [a.num_heads for a in attention_modules(model).values()]
    assert len(set(heads)) > 1, heads  # the blocks keep different head counts
    source = tmp_path / "model.onnx"
    export_onnx(model, source)

    graph = onnx.load(str(source))
    assert fuse_attention(graph) == len(heads)
    fused_nodes = [n for n in graph.graph.node if n.op_type == "MultiHeadAttention"]
    assert [onnx.helper.get_attribute_value(n.attribute[0]) for n in fused_nodes] == heads
    assert not [n for n in graph.graph.node if n.op_type == "Softmax"]  # nothing of the old pattern is left
    assert all(len(n.input) > 3 and n.input[3] for n in fused_nodes)  # qkv's bias is added by the fused operator
    producers = {o: n.op_type for n in graph.graph.node for o in n.output}
    splits = [n for n in graph.graph.node if n.op_type == "Split"]
    assert [producers[n.input[0]] for n in splits] == ["MatMul"] * len(heads)
    if family == "beit":  # the relative position bias goes in as the attention bias
        assert all(len(n.input) == 6 and n.input[5] for n in fused_nodes)
    fused = tmp_path / "fused.onnx"
    onnx.save(graph, str(fused))
    onnx.checker.check_model(str(fused))

    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    with OrtRunner(fused) as runner:
        assert np.abs(runner.infer(x) - expected).max() <= 1e-4


def test_the_cpu_build_keeps_the_fused_graph_only_if_it_measures_faster(tmp_path: Path) -> None:
    model, _ = _pruned(FAMILIES["deit"], metric="l2", ratio=0.5, prune_heads=True)
    source = tmp_path / "model.onnx"
    export_onnx(model, source)
    record = build_ort_cpu(source, tmp_path / "engine.onnx", batch_sizes=(1, 8), threads=1)
    assert record["attention_fused"] == 2 and record["fused_max_abs_diff"] <= 1e-4
    assert record["fused_ops"]["fused"]["MultiHeadAttention"] == 2
    assert "MultiHeadAttention" not in record["fused_ops"]["unfused"]
    p50 = record["p50_ms"]
    assert set(p50) == {"unfused", "fused"} and all(set(v) == {"1", "8"} for v in p50.values())
    assert record["chosen"] == min(p50, key=lambda name: p50[name]["1"])
    kept = {n.op_type for n in onnx.load(str(tmp_path / "engine.onnx")).graph.node}
    assert ("MultiHeadAttention" in kept) == (record["chosen"] == "fused")


def test_a_graph_without_attention_is_left_alone(tmp_path: Path) -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Softmax(-1))
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(mlp, (torch.zeros(1, 3, 2, 2),), str(path), dynamo=False)
    graph = onnx.load(str(path))
    before = [n.op_type for n in graph.graph.node]
    assert fuse_attention(graph) == 0 and [n.op_type for n in graph.graph.node] == before
