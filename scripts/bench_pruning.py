"""MACs, parameters and onnxruntime CPU latency of pruned ViT-B, DeiT-B and BEiT-B, against the unpruned model.

Latency does not depend on trained weights, so models start from random init (importance: l2 unless --metric).
Everything is measured in one run, so the speed-ups compare like with like on a shared machine.

    python scripts/bench_pruning.py --ratios 0.5 0.75 0.95 --threads 2 --out pruning-bench.md
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from edgeprune.bench.latency import measure_latency
from edgeprune.config import PruneConfig
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.runners import OrtRunner
from edgeprune.models.loading import create_model
from edgeprune.models.registry import resolve_model
from edgeprune.prune.counting import count_macs, count_params, input_size
from edgeprune.prune.pruner import prune_model

PAPER_SPEEDUP_AT_HALF = {"vit": 2.5, "beit": 1.81, "deit": 2.15}


def latency_ms(model: torch.nn.Module, folder: Path, name: str, threads: int, iterations: int) -> float:
    path = folder / f"{name}.onnx"
    export_onnx(model, path)
    runner = OrtRunner(path, threads=threads)
    batch = np.random.default_rng(0).standard_normal((1, 3, *input_size(model))).astype(np.float32)
    return measure_latency(runner.run, batch, warmup=5, iterations=iterations)["p50"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit", "deit", "beit"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.75, 0.95])
    parser.add_argument("--metric", default="l2")
    parser.add_argument("--prune-heads", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = [
        "| model | ratio | GMACs | params (M) | MACs ratio | p50 latency (ms) | speed-up | speed-up / MACs ratio "
        "| paper speed-up at 0.5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for alias in args.models:
            spec = resolve_model(alias)
            torch.manual_seed(0)
            base = create_model(spec, 1000, random_init=True).eval()
            base_macs, base_params = count_macs(base), count_params(base)
            calib = [(torch.randn(4, 3, *input_size(base)), torch.arange(4))]
            base_ms = latency_ms(base, folder, f"{alias}-base", args.threads, args.iterations)
            rows.append(
                f"| {spec.timm_name} | 0 | {base_macs / 1e9:.2f} | {base_params / 1e6:.1f} | 1.00x "
                f"| {base_ms:.1f} | 1.00x | - | - |"
            )
            for ratio in args.ratios:
                torch.manual_seed(0)
                model = create_model(spec, 1000, random_init=True).eval()
                start = time.perf_counter()
                report = prune_model(model, spec.timm_name, PruneConfig(args.metric, ratio, args.prune_heads), calib)
                prune_s = time.perf_counter() - start
                ms = latency_ms(model, folder, f"{alias}-{ratio}", args.threads, args.iterations)
                macs_ratio = base_macs / report.macs.after
                speedup = base_ms / ms
                paper = PAPER_SPEEDUP_AT_HALF.get(alias, "-") if ratio == 0.5 else "-"
                rows.append(
                    f"| {spec.timm_name} | {ratio} | {report.macs.after / 1e9:.2f} "
                    f"| {report.params.after / 1e6:.1f} | {macs_ratio:.2f}x | {ms:.1f} | {speedup:.2f}x "
                    f"| {speedup / macs_ratio:.0%} | {paper} |"
                )
                print(f"{alias} {ratio}: pruned in {prune_s:.1f}s, {ms:.1f} ms vs {base_ms:.1f} ms", flush=True)
    header = (
        f"onnxruntime {ort.__version__} CPUExecutionProvider, batch 1, {args.threads} intra-op threads, "
        f"median of {args.iterations} runs after 5 warm-up; {platform.machine()}, {torch.get_num_threads()} "
        f"torch threads; metric {args.metric}, prune heads: {args.prune_heads}, random weights."
    )
    table = "\n".join([header, "", *rows, ""])
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
