"""Attention fused into one onnxruntime node per block (Attention or MultiHeadAttention) on pruned ViT, DeiT, BEiT."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeprune.export.attention_fusion import fuse_attention
from edgeprune.export.compare import compare_logits
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.ort_engine import build_ort_cpu
from edgeprune.export.runners import OrtRunner
from edgeprune.models.attention import attention_modules
from edgeprune.models.registry import ModelSpec
from tests.test_prune import FAMILIES, _pruned


def _max_difference_from_torch(model: torch.nn.Module, graph: onnx.ModelProto, path: Path, **feeds: float) -> float:
    onnx.save(graph, str(path))
    onnx.checker.check_model(str(path))
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    with OrtRunner(path) as runner:
        extra = {name: np.array([value], np.float32) for name, value in feeds.items()}
        got = runner.session.run(None, {runner.session.get_inputs()[0].name: x, **extra})[0]
    return compare_logits([(expected, got)]).max_abs_diff


NO_QKV_BIAS = ModelSpec("vit", "vit_tiny_patch16_224", {**FAMILIES["vit"].create_kwargs, "qkv_bias": False})


@pytest.mark.parametrize("family", ["vit", "deit", "beit", "vit without qkv bias"])
def test_pruned_attention_fuses_with_each_blocks_own_head_count(family: str, tmp_path: Path) -> None:
    spec = NO_QKV_BIAS if family == "vit without qkv bias" else FAMILIES[family]
    model, _ = _pruned(spec, metric="random", ratio=0.5, prune_heads=True, normalization="none")
    heads = [a.num_heads for a in attention_modules(model).values()]
    assert len(set(heads)) > 1 or spec is NO_QKV_BIAS, heads  # the blocks keep different head counts
    source = tmp_path / "model.onnx"
    export_onnx(model, source)

    graph = onnx.load(str(source))
    assert fuse_attention(graph) == len(heads)
    fused_nodes = [n for n in graph.graph.node if n.op_type == "Attention"]
    assert [onnx.helper.get_attribute_value(n.attribute[0]) for n in fused_nodes] == heads
    # nothing of the old pattern is left, nor the qkv projection: the operator computes it from the block's input
    assert not {"Softmax", "Split", "MultiHeadAttention"} & {n.op_type for n in graph.graph.node}
    producers = {o: n.op_type for n in graph.graph.node for o in n.output}
    assert [producers[n.input[0]] for n in fused_nodes] == ["LayerNormalization"] * len(heads)
    readers = [i for n in graph.graph.node for i in n.input]
    assert all(readers.count(n.input[1]) == 1 for n in fused_nodes)  # the qkv MatMul that read W is gone
    initializers = {i.name: i for i in graph.graph.initializer}
    qkv_widths = [a.qkv.weight.shape[0] for a in attention_modules(model).values()]
    assert [list(initializers[n.input[1]].dims)[1] for n in fused_nodes] == qkv_widths
    assert [list(initializers[n.input[2]].dims) for n in fused_nodes] == [[w] for w in qkv_widths]  # qkv's bias
    if spec is NO_QKV_BIAS:  # the operator's bias input is required: zeros
        assert all(not numpy_helper.to_array(initializers[n.input[2]]).any() for n in fused_nodes)
    if family == "beit":  # the relative position bias goes in as the attention bias
        assert all(len(n.input) == 6 and n.input[5] for n in fused_nodes)
    assert _max_difference_from_torch(model, graph, tmp_path / "fused.onnx") <= 1e-4


def test_a_qkv_projection_by_a_computed_weight_fuses_as_split_and_multi_head_attention(tmp_path: Path) -> None:
    model, _ = _pruned(FAMILIES["beit"], metric="random", ratio=0.5, prune_heads=True, normalization="none")
    heads = [a.num_heads for a in attention_modules(model).values()]
    source = tmp_path / "model.onnx"
    export_onnx(model, source)
    graph = onnx.load(str(source))
    # the first block's qkv weight becomes W * one, with one a graph input: not a constant any more
    projection = next(n for n in graph.graph.node if n.name == "/blocks.0/attn/MatMul")
    weights = projection.input[1]
    graph.graph.input.append(onnx.helper.make_tensor_value_info("one", onnx.TensorProto.FLOAT, [1]))
    graph.graph.node.insert(0, onnx.helper.make_node("Mul", [weights, "one"], ["computed_qkv"], name="computed_qkv"))
    projection.input[1] = "computed_qkv"

    assert fuse_attention(graph) == len(heads)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("MultiHeadAttention") == 1 and ops.count("Split") == 1 and ops.count("Attention") == len(heads) - 1
    multi_head = next(n for n in graph.graph.node if n.op_type == "MultiHeadAttention")
    assert onnx.helper.get_attribute_value(multi_head.attribute[0]) == heads[0]
    assert len(multi_head.input) == 6 and multi_head.input[3] and multi_head.input[5]  # qkv bias, position bias
    assert _max_difference_from_torch(model, graph, tmp_path / "fused.onnx", one=1.0) <= 1e-4


def test_the_cpu_build_keeps_the_fused_graph_only_if_it_measures_faster(tmp_path: Path) -> None:
    model, _ = _pruned(FAMILIES["deit"], metric="l2", ratio=0.5, prune_heads=True)
    source = tmp_path / "model.onnx"
    export_onnx(model, source)
    record = build_ort_cpu(source, tmp_path / "engine.onnx", batch_sizes=(1, 8), threads=1)
    assert record["attention_fused"] == 2 and record["fused_max_abs_diff"] <= 1e-4
    assert record["fused_ops"]["fused"]["Attention"] == 2
    assert "Attention" not in record["fused_ops"]["unfused"]
    p50 = record["p50_ms"]
    assert set(p50) == {"unfused", "fused"} and all(set(v) == {"1", "8"} for v in p50.values())
    assert record["chosen"] == min(p50, key=lambda name: p50[name]["1"])
    kept = {n.op_type for n in onnx.load(str(tmp_path / "engine.onnx")).graph.node}
    assert ("Attention" in kept) == (record["chosen"] == "fused")


def test_a_graph_without_attention_is_left_alone(tmp_path: Path) -> None:
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Softmax(-1))
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(mlp, (torch.zeros(1, 3, 2, 2),), str(path), dynamo=False)
    graph = onnx.load(str(path))
    before = [n.op_type for n in graph.graph.node]
    assert fuse_attention(graph) == 0 and [n.op_type for n in graph.graph.node] == before
