"""What INT8 can buy at most on this CPU: one linear layer of a ViT, fp32 MatMul against onnxruntime's dynamic INT8
(DynamicQuantizeMatMul) and static INT8 (QDQ, per-channel weights), timed in alternating rounds in one process.

A whole model's INT8 speed-up is bounded by its GEMMs' (the rest stays float), so this says which speed-up targets
this CPU's instruction set can reach (AVX2 without VNNI multiplies int8 through 16-bit pairs).

    python scripts/bench_int8_gemm.py --tokens 197 --dims 768x3072 3072x768 192x768 --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static

from edgeprune.hardware import cpu_isa


def linear_model(k: int, n: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((k, n)) / k**0.5).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(n, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y0"], name="mm"), helper.make_node("Add", ["y0", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [weight, bias],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


class _Reader(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]):
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        return None if x is None else {"x": x}


def p50_ms(sessions: dict[str, ort.InferenceSession], x: np.ndarray, rounds: int, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            session.run(None, {"x": x})
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, {"x": x})
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) * 1e3 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[197, 1576], help="rows (tokens x batch)")
    parser.add_argument("--dims", nargs="+", default=["768x3072", "3072x768", "192x768", "768x192"], help="KxN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    print(
        f"CPU ISA {cpu_isa()}, onnxruntime {ort.__version__}, {args.threads} threads, p50 of {args.rounds} "
        f"alternating rounds x {args.runs} runs"
    )
    print("| M x K x N | fp32 ms | dynamic INT8 ms | static INT8 ms | dynamic speed-up | static speed-up |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="edgeprune-gemm-") as work:
        for dims in args.dims:
            k, n = (int(v) for v in dims.split("x"))
            fp32, dynamic, static = (Path(work) / f"{name}-{dims}.onnx" for name in ("fp32", "dynamic", "static"))
            linear_model(k, n, fp32)
            quantize_dynamic(str(fp32), str(dynamic), per_channel=True, weight_type=QuantType.QInt8)
            calibration = [rng.standard_normal((64, k)).astype(np.float32) for _ in range(4)]
            quantize_static(str(fp32), str(static), _Reader(calibration), per_channel=True)
            sessions = {
                name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in (("fp32", fp32), ("dynamic", dynamic), ("static", static))
            }
            for m in args.tokens:
                p50 = p50_ms(sessions, rng.standard_normal((m, k)).astype(np.float32), args.rounds, args.runs)
                print(
                    f"| {m} x {k} x {n} | {p50['fp32']:.3f} | {p50['dynamic']:.3f} | {p50['static']:.3f} "
                    f"| {p50['fp32'] / p50['dynamic']:.2f}x | {p50['fp32'] / p50['static']:.2f}x |"
                )


if __name__ == "__main__":
    main()
