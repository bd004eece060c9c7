"""MACs, parameters and onnxruntime CPU latency of pruned ViT-B, DeiT-B and BEiT-B, against the unpruned model.

Latency does not depend on trained weights, so models start from random init (importance: l2 unless --metric).
Each model is built for the target as `export` builds it (the `ort-cpu` build times the graph with attention fused
into onnxruntime's Attention against the unfused one and keeps the faster); the unpruned model and its pruned versions
are timed together in alternating rounds, so a burst of load on a shared machine slows all alike.

    python scripts/bench_pruning.py --ratios 0.5 0.75 0.95 --threads 2 --out pruning-bench.md
    python scripts/bench_pruning.py --models beit --ratios 0.5 --plans default whole-heads
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import onnxruntime as ort
import torch

from edgeprune.config import PruneConfig
from edgeprune.latency.measure import measure_p50s
from edgeprune.models.loading import create_model
from edgeprune.models.registry import resolve_model
from edgeprune.profiles import load_profile
from edgeprune.prune.counting import count_macs, count_params, input_size
from edgeprune.prune.pruner import prune_model
from edgeprune.targets import resolve_target

PAPER_SPEEDUP_AT_HALF = {"vit": 2.5, "beit": 1.81, "deit": 2.15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit", "deit", "beit"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.75, 0.95])
    parser.add_argument("--metric", default="l2")
    parser.add_argument("--prune-heads", action="store_true")
    parser.add_argument(
        "--plans",
        nargs="+",
        default=["default"],
        choices=["default", "whole-heads"],
        help="how attention is pruned at each ratio: as the other options say, or by whole heads only (prune's "
        "--whole-heads); several are timed in the same rounds",
    )
    parser.add_argument("--round-to", type=int, default=None, help="kept widths in multiples of N (prune's option)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--target", default="ort-cpu", choices=["ort-cpu", "ort-cpu-int8"])
    parser.add_argument("--profile", default="cpu-x86")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    target, profile = resolve_target(args.target), load_profile(args.profile)

    rows = [
        "| model | ratio | plan | GMACs | params (M) | MACs ratio | unpruned p50 (ms) | pruned p50 (ms) | speed-up "
        "| speed-up / MACs ratio | paper speed-up at 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for alias in args.models:
        spec = resolve_model(alias)
        torch.manual_seed(0)
        base = create_model(spec, 1000, random_init=True).eval()
        base_macs = count_macs(base)
        calib = [(torch.randn(4, 3, *input_size(base)), torch.arange(4))]
        rows.append(
            f"| {spec.timm_name} | 0 | - | {base_macs / 1e9:.2f} | {count_params(base) / 1e6:.1f} | 1.00x | - | - "
            "| 1.00x | - | - |"
        )
        pruned, reports, cases = [], [], [(ratio, plan) for ratio in args.ratios for plan in args.plans]
        for ratio, plan in cases:
            torch.manual_seed(0)
            model = create_model(spec, 1000, random_init=True).eval()
            start = time.perf_counter()
            config = PruneConfig(
                metric=args.metric,
                ratio=ratio,
                prune_heads=args.prune_heads,
                whole_heads=plan == "whole-heads",
                round_to=args.round_to,
            )
            reports.append(prune_model(model, spec.timm_name, config, calib))
            print(f"{alias} {ratio} {plan}: pruned in {time.perf_counter() - start:.1f}s", flush=True)
            pruned.append(model)
        base_ms, *pruned_ms = measure_p50s(
            [base, *pruned], target, profile, batch=1, threads=args.threads, timed_choices=True
        )
        for (ratio, plan), report, ms in zip(cases, reports, pruned_ms, strict=True):
            macs_ratio = base_macs / report.macs.after
            speedup = base_ms / ms
            paper = PAPER_SPEEDUP_AT_HALF.get(alias, "-") if ratio == 0.5 else "-"
            rows.append(
                f"| {spec.timm_name} | {ratio} | {plan} | {report.macs.after / 1e9:.2f} "
                f"| {report.params.after / 1e6:.1f} | {macs_ratio:.2f}x | {base_ms:.1f} | {ms:.1f} | {speedup:.2f}x "
                f"| {speedup / macs_ratio:.0%} | {paper} |"
            )
    header = (
        f"onnxruntime {ort.__version__}, target {target.name} (as `export` builds it), batch 1, {args.threads} "
        f"intra-op threads, each model timed beside its pruned versions in alternating rounds (p50); "
        f"{platform.machine()}; metric {args.metric}, prune heads: {args.prune_heads}, round to: {args.round_to}, "
        "random weights."
    )
    table = "\n".join([header, "", *rows, ""])
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
