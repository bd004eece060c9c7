"""Where a pruned ViT's attention time goes on onnxruntime CPU: one-operator graphs timed in alternating rounds.

onnxruntime's MultiHeadAttention (the attention core of the Attention operator `ort-cpu` fuses into) at several head
counts and head dims, with and without BEiT's position bias (a constant (1, H, N, N) input), beside its parts: the
softmax over the (1, H, N, N) logits, adding the bias, and a LayerNorm and a residual Add at the widths of an unpruned
and a pruned ViT-B. Pruning head dims shrinks the two attention products but not the softmax, so a MACs ratio
overstates what it buys; whole heads shrink both.

    python scripts/bench_attention.py --threads 2 --heads-dims 12x64 12x32 12x16 6x64 --widths 768 413 --rounds 200
"""

from __future__ import annotations

import argparse
import platform
from functools import partial

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeprune.bench.latency import measure_interleaved
from edgeprune.export.runners import session_options

TOKENS = 197  # 224 x 224 images in 16 x 16 patches, plus the class token


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int]], constants: dict[str, np.ndarray]) -> bytes:
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def attention_case(heads: int, dim: int, bias: bool, rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    constants = {"bias": rng.standard_normal((1, heads, TOKENS, TOKENS)).astype(np.float32)} if bias else {}
    inputs = ["q", "k", "v", *(["", "", "bias"] if bias else [])]
    node = helper.make_node("MultiHeadAttention", inputs, ["y"], domain="com.microsoft", num_heads=heads)
    shape = [1, TOKENS, heads * dim]
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name in "qkv"}
    return _model([node], dict.fromkeys("qkv", shape), constants), feeds


def single_op_case(
    op: str, shape: list[int], constant: np.ndarray | None, rng: np.random.Generator, **attributes: int
) -> tuple[bytes, dict[str, np.ndarray]]:
    node = helper.make_node(op, ["x", *(["c"] if constant is not None else [])], ["y"], **attributes)
    constants = {"c": constant} if constant is not None else {}
    return _model([node], {"x": shape}, constants), {"x": rng.standard_normal(shape).astype(np.float32)}


def p50s(cases: dict[str, tuple[bytes, dict[str, np.ndarray]]], threads: int, rounds: int) -> dict[str, float]:
    """p50 of each case's session, 10 runs a round in `rounds` rounds that alternate between them."""
    options = session_options(threads)
    runs = {}
    for name, (model, feeds) in cases.items():
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        runs[name] = partial(_run, session, feeds)
    stats = measure_interleaved(runs, np.zeros(1), warmup=5, iterations=10 * rounds, rounds=rounds)
    return {name: row["p50"] for name, row in stats.items()}


def _run(session: ort.InferenceSession, feeds: dict[str, np.ndarray], _batch: np.ndarray) -> None:
    session.run(None, feeds)  # each case has its own inputs; the shared batch argument is unused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads-dims", nargs="+", default=["12x64", "12x32", "12x16", "6x64"])
    parser.add_argument("--widths", nargs="+", type=int, default=[768, 413], help="residual-stream widths")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cases = {}
    for heads, dim in (tuple(int(v) for v in hd.split("x")) for hd in args.heads_dims):
        for bias in (True, False):
            cases[f"MultiHeadAttention {heads} heads x {dim} dims, bias {'yes' if bias else 'no'}"] = attention_case(
                heads, dim, bias, rng
            )
    heads = max(int(hd.split("x")[0]) for hd in args.heads_dims)
    logits = [1, heads, TOKENS, TOKENS]
    cases[f"Softmax (1, {heads}, {TOKENS}, {TOKENS})"] = single_op_case("Softmax", logits, None, rng, axis=-1)
    bias = rng.standard_normal(logits).astype(np.float32)
    cases[f"Add bias (1, {heads}, {TOKENS}, {TOKENS})"] = single_op_case("Add", logits, bias, rng)
    for width in args.widths:
        shape = [1, TOKENS, width]
        scale = np.ones(width, np.float32)
        cases[f"LayerNormalization (1, {TOKENS}, {width})"] = single_op_case(
            "LayerNormalization", shape, scale, rng, axis=-1
        )
        residual = rng.standard_normal(shape).astype(np.float32)
        cases[f"Add (1, {TOKENS}, {width})"] = single_op_case("Add", shape, residual, rng)
    results = p50s(cases, args.threads, args.rounds)
    print(
        f"onnxruntime {ort.__version__} CPU, {args.threads} intra-op threads, {platform.machine()}, "
        f"p50 of {args.rounds} alternating rounds of 10 runs"
    )
    print("\n| operator | p50 (ms) |\n|---|---|")
    for name, ms in results.items():
        print(f"| {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
