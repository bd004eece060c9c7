"""Each attention of an exported ViT, DeiT or BEiT as one onnxruntime node: `com.microsoft.Attention`, or
`com.microsoft.MultiHeadAttention` after a Split where the qkv projection is not a MatMul of the block's 3-D input by
a constant 2-D weight that only the attention reads.

onnxruntime's transformer optimizer finds no attention to fuse in the TorchScript export of timm's attention (nor
of a pruned one, whose blocks keep different head counts). The pattern is found here from the Softmax out:

    qkv -> Reshape(B, N, 3, H, D) -> Transpose(2, 0, 3, 1, 4) -> ... q, k, v ... -> MatMul(q, k^T)
        [-> Add(position bias)] -> Softmax -> MatMul(., v) -> Transpose(0, 2, 1, 3) -> Reshape(B, N, H*D)

and replaced by Attention(x, W_qkv, b_qkv[, attention_bias]) with the block's own head count, which takes in the
projection too: the qkv tensor is never written whole and split (onnxruntime's CPU kernel computes q, k and v per
head straight into its own layout), one operator and one pass over the qkv tensor fewer per block. That counts most
in a pruned model, whose matmuls shrink more than its short memory-bound operators (README Results: BEiT-B at
--ratio 0.5). Otherwise: Split(qkv) -> MultiHeadAttention(q, k, v[, attention_bias]). The shape arithmetic and
transposes around it become dead and are removed. Where qkv is MatMul + a constant bias, the bias goes into the
operator's own bias input. The softmax scale is the operator's default, 1 / sqrt(D), which is what timm's fused
attention uses (a pruned model keeps its original temperature because pruning folds the difference into q's
weights); callers check parity with the unfused graph anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

MS_DOMAIN = "com.microsoft"
ATTENTION_OP = "Attention"  # what a timm attention becomes (latency tables record it: they time fused graphs)


@dataclass(frozen=True)
class _Projection:
    source: str  # the block's input, (B, N, C)
    weights: str  # (C, 3 * H * D)
    width: int  # 3 * H * D
    dtype: np.dtype


@dataclass(frozen=True)
class _Attention:
    qkv: str  # (B, N, 3 * H * D), before the bias if `qkv_bias`
    qkv_bias: str | None  # (3 * H * D,), added inside the fused operator
    projection: _Projection | None  # qkv = x @ W for a constant 2-D W, where nothing else reads qkv
    out: str  # (B, N, H * D)
    heads: int
    bias: str | None  # added to the logits: (H, N, N) or (1 | B, H, N, N)
    dead: tuple[str, ...]  # names of the nodes the fused node replaces (removed if nothing else reads them)


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {i.name: i for i in model.graph.initializer}

    def only_consumer(self, tensor: str, op_type: str) -> onnx.NodeProto | None:
        found = self.consumers.get(tensor, [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    def constant(self, tensor: str) -> np.ndarray | None:
        if tensor in self.initializers:
            return numpy_helper.to_array(self.initializers[tensor])
        node = self.producer.get(tensor)
        if node is not None and node.op_type == "Constant" and node.attribute:
            return numpy_helper.to_array(node.attribute[0].t)
        if node is not None and node.op_type == "Identity":  # the exporter's alias of a shared initializer
            return self.constant(node.input[0])
        return None

    def split_bias(self, tensor: str, reader: onnx.NodeProto) -> tuple[str, str | None]:
        """`tensor` as (matmul output, constant 1-D bias) if it is their sum and `reader` its only reader."""
        add = self.producer.get(tensor)
        if add is None or add.op_type != "Add" or [n.name for n in self.consumers.get(tensor, [])] != [reader.name]:
            return tensor, None
        for matmul_out, bias in (add.input, reversed(add.input)):
            source, value = self.producer.get(matmul_out), self.constant(bias)
            is_bias = value is not None and value.ndim == 1 and value.size > 1
            if source is not None and source.op_type == "MatMul" and is_bias:
                return matmul_out, bias
        return tensor, None

    def ancestors(self, tensor: str, depth: int) -> list[onnx.NodeProto]:
        found, frontier = [], [tensor]
        for _ in range(depth):
            nodes = [self.producer[t] for t in frontier if t in self.producer]
            found += nodes
            frontier = [i for n in nodes for i in n.input]
        return found


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _find(graph: _Graph, softmax: onnx.NodeProto) -> _Attention | None:
    pv = graph.only_consumer(softmax.output[0], "MatMul")
    back = pv and graph.only_consumer(pv.output[0], "Transpose")
    merge = back and _perm(back) == [0, 2, 1, 3] and graph.only_consumer(back.output[0], "Reshape")
    if not merge:
        return None
    logits, bias = graph.producer.get(softmax.input[0]), None
    if logits is not None and logits.op_type == "Add":
        scores = [
            i for i in logits.input if graph.producer.get(i) is not None and graph.producer[i].op_type == "MatMul"
        ]
        if len(scores) != 1:
            return None
        bias = next(i for i in logits.input if i != scores[0])
        logits = graph.producer[scores[0]]
    if logits is None or logits.op_type != "MatMul":
        return None
    split = [n for n in graph.ancestors(pv.input[1], 6) if n.op_type == "Transpose" and _perm(n) == [2, 0, 3, 1, 4]]
    reshape = split and graph.producer.get(split[0].input[0])
    if not reshape or reshape.op_type != "Reshape":
        return None
    shape = graph.producer.get(reshape.input[1])
    heads = graph.constant(shape.input[-2]) if shape is not None and shape.op_type == "Concat" else None
    if heads is None and shape is None:
        fixed = graph.constant(reshape.input[1])
        heads = None if fixed is None else fixed[-2:-1]
    if heads is None or heads.size != 1 or int(heads.reshape(-1)[0]) < 1:
        return None
    dead = (reshape, split[0], logits, softmax, pv, back, merge)
    qkv, qkv_bias = graph.split_bias(reshape.input[0], reshape)
    heads_count = int(heads.reshape(-1)[0])
    return _Attention(
        qkv, qkv_bias, _projection(graph, qkv), merge.output[0], heads_count, bias, tuple(n.name for n in dead)
    )


def _projection(graph: _Graph, qkv: str) -> _Projection | None:
    matmul = graph.producer.get(qkv)
    if matmul is None or matmul.op_type != "MatMul" or len(graph.consumers.get(qkv, [])) != 1:
        return None
    weights = graph.constant(matmul.input[1])
    if weights is None or weights.ndim != 2:
        return None
    return _Projection(matmul.input[0], matmul.input[1], weights.shape[1], weights.dtype)


def _remove_dead(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nothing reads (repeatedly), and initializers no node reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        keep = [n for n in model.graph.node if any(o in read for o in n.output)]
        if len(keep) == len(model.graph.node):
            break
        del model.graph.node[:]
        model.graph.node.extend(keep)
    read = {i for n in model.graph.node for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in read]
    for initializer in unused:
        model.graph.initializer.remove(initializer)


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}
    ranks.update({i.name: len(i.dims) for i in model.graph.initializer})
    return ranks


def _attention_node(
    model: onnx.ModelProto, attention: _Attention, projection: _Projection, prefix: str, logits_bias: str | None
) -> list[onnx.NodeProto]:
    qkv_bias = attention.qkv_bias
    if qkv_bias is None:  # the operator's bias input is required
        qkv_bias = f"{prefix}/qkv_bias"
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(projection.width, projection.dtype), qkv_bias))
    inputs = [projection.source, projection.weights, qkv_bias] + (["", "", logits_bias] if logits_bias else [])
    name, heads = f"{prefix}/Attention", attention.heads
    return [helper.make_node(ATTENTION_OP, inputs, [attention.out], name=name, domain=MS_DOMAIN, num_heads=heads)]


def _split_and_multi_head_attention(
    model: onnx.ModelProto, attention: _Attention, prefix: str, logits_bias: str | None
) -> list[onnx.NodeProto]:
    q, k, v = (f"{prefix}/{part}" for part in "qkv")
    outputs = {"num_outputs": 3} if model.opset_import[0].version >= 18 else {}  # an attribute since opset 18
    split = helper.make_node("Split", [attention.qkv], [q, k, v], name=f"{prefix}/split", axis=2, **outputs)
    inputs = [q, k, v, attention.qkv_bias or ""] + (["", logits_bias] if logits_bias else [])
    while not inputs[-1]:
        inputs.pop()
    fused = helper.make_node(
        "MultiHeadAttention",
        inputs,
        [attention.out],
        name=f"{prefix}/MultiHeadAttention",
        domain=MS_DOMAIN,
        num_heads=attention.heads,
    )
    return [split, fused]


def fuse_attention(model: onnx.ModelProto) -> int:
    """Replace every attention found in `model` (in place) by one onnxruntime node; return how many were fused."""
    graph = _Graph(model)
    if len({n.name for n in model.graph.node}) != len(model.graph.node) or not all(n.name for n in model.graph.node):
        return 0  # the rewrite keys nodes by name: leave a graph with unnamed or repeated names as it is
    ranks = _ranks(model)
    found = [a for a in (_find(graph, n) for n in model.graph.node if n.op_type == "Softmax") if a is not None]
    if not found:
        return 0
    position = {n.name: i for i, n in enumerate(model.graph.node)}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    prefixes = [a.dead[3].rsplit("/", 1)[0] if "/" in a.dead[3] else "" for a in found]  # the Softmax's scope
    for index, attention in enumerate(found):
        # Named in the attention's scope (/blocks/blocks.3/attn/...), so profiles attribute it to its block.
        prefix = prefixes[index] if prefixes[index] and prefixes.count(prefixes[index]) == 1 else f"attention_{index}"
        prefix = f"{prefix}/fused"
        nodes, logits_bias = [], attention.bias
        if logits_bias is not None and ranks.get(logits_bias) != 4:
            logits_bias, axes = f"{prefix}/bias4d", f"{prefix}/axes"
            model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), axes))
            unsqueeze = helper.make_node("Unsqueeze", [attention.bias, axes], [logits_bias], name=f"{prefix}/unsqueeze")
            nodes.append(unsqueeze)
        projection = attention.projection
        if projection is not None and ranks.get(projection.source) == 3:
            nodes += _attention_node(model, attention, projection, prefix, logits_bias)
        else:
            nodes += _split_and_multi_head_attention(model, attention, prefix, logits_bias)
        new_nodes[position[attention.dead[-1]]] = nodes
    merged = [attention.dead[-1] for attention in found]
    rebuilt: list[onnx.NodeProto] = []
    for i, node in enumerate(model.graph.node):
        if node.name in merged:
            rebuilt += new_nodes[i]  # the fused node writes the tensor the old Reshape wrote
        else:
            rebuilt.append(node)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    _remove_dead(model)
    return len(found)
