"""Every CPU target of one run in one table, measured in one process (Ultralytics' benchmark layout).

For each target: whether it built, its size, held-out accuracy and top-1 agreement with the torch model on the
same images, p50 / p90 latency and throughput at one batch size, and the speed-up over the UNPRUNED fp32 ONNX
(export/baseline.onnx). Targets not built yet are built first with `edgeprune export` (the profile's settings);
all engines and the unpruned ONNX are then timed in alternating rounds, so load elsewhere slows them alike.

    python scripts/bench_engines.py --workspace RUNS --run NAME --profile cpu-x86 --every 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeprune.bench.latency import measure_interleaved
from edgeprune.errors import EdgepruneError
from edgeprune.export.engines import make_runner
from edgeprune.export.runners import OrtRunner
from edgeprune.hardware import capped_threads, cpu_isa, cpu_model
from edgeprune.models.artifact import load_model
from edgeprune.pipeline.context import RunData, eval_loader
from edgeprune.pipeline.export import run_export
from edgeprune.profiles import load_profile
from edgeprune.progress import Reporter
from edgeprune.requests import ExportRequest
from edgeprune.results import BuildRecord
from edgeprune.targets import TARGETS, resolve_target
from edgeprune.workspace import Workspace

CPU_TARGETS = [name for name, t in TARGETS.items() if t.onnxruntime_cpu]


def _build(workspace: Workspace, run_name: str, target: str, profile: str) -> str:
    run = workspace.get_run(run_name)
    if run.build_record_path(target).exists():
        return "built before"
    start = time.perf_counter()
    try:
        run_export(workspace, ExportRequest(target=target, profile=profile), run_name)
    except EdgepruneError as exc:
        return f"failed: {exc}"
    return f"built in {time.perf_counter() - start:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--profile", default="cpu-x86")
    parser.add_argument("--targets", default=",".join(CPU_TARGETS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, help="default: the profile's, capped at this machine's cores")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--every", type=int, default=1, help="score every N-th held-out image")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    workspace = Workspace(args.workspace)
    profile = load_profile(args.profile)
    threads = capped_threads(args.threads or profile.backend.threads)
    targets = [resolve_target(name) for name in args.targets.split(",")]
    status = {t.name: _build(workspace, args.run, t.name, args.profile) for t in targets}
    run = workspace.get_run(args.run)
    data = RunData.from_manifest(run.manifest(), Reporter())
    model = load_model(run.stage("finetuned")).eval()
    images, labels = [], []
    for x, y in eval_loader(model, data.split.test[:: args.every], batch_size=32):
        images.append(x.numpy())
        labels.append(y.numpy())
    truth = np.concatenate(labels)
    with torch.no_grad():
        torch_preds = np.concatenate([model(torch.from_numpy(x)).argmax(1).numpy() for x in images])

    rows: dict[str, dict[str, Any]] = {}
    runners = {"unpruned fp32 ONNX": OrtRunner(run.stage("export") / "baseline.onnx", threads=threads)}
    for target in targets:
        row = rows[target.name] = {"target": target.name, "status": status[target.name]}
        if status[target.name].startswith("failed"):
            continue
        build = BuildRecord.read(run.build_record_path(target.name))
        engine = run.dir / build.engines["model"].path
        row["size_mb"] = engine.stat().st_size / 2**20
        runner = runners[target.name] = make_runner(target, engine, profile, threads, run.engine_dir(target.name))
        preds = np.concatenate([runner.infer(x).argmax(1) for x in images])
        row["held_out_accuracy"] = float((preds == truth).mean())
        row["agreement_with_torch"] = float((preds == torch_preds).mean())
        quantization = (build.quantization or {}).get("model", {})
        row["int8_scheme"] = quantization.get("scheme")
        row["attention_fused"] = (build.to_json().get("cpu_graph") or {}).get("model", {}).get("chosen")
    batch = np.resize(np.concatenate(images), (args.batch, *images[0].shape[1:]))
    timed = measure_interleaved({n: r.infer for n, r in runners.items()}, batch, iterations=args.iterations)
    reference = timed.pop("unpruned fp32 ONNX")
    for name, stats in timed.items():
        rows[name].update(
            p50_ms=stats["p50"],
            p90_ms=stats["p90"],
            fps=stats["throughput_ips"],
            speedup=reference["p50"] / stats["p50"],
        )
    for runner in runners.values():
        runner.close()

    setting = (
        f"run {args.run}, held-out {data.split.target} ({len(truth)} images), batch {args.batch}, threads {threads}, "
        f"{cpu_model()} ({cpu_isa()}), {platform.machine()}; unpruned fp32 ONNX p50 {reference['p50']:.2f} ms"
    )
    print(setting)
    print("| target | status | size MB | held-out acc | agreement | p50 ms | p90 ms | FPS | speed-up | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    torch_accuracy = float((torch_preds == truth).mean())
    for row in rows.values():
        if "p50_ms" not in row:
            print(f"| {row['target']} | {row['status']} | | | | | | | | |")
            continue
        notes = ", ".join(f"{k} {row[k]}" for k in ("int8_scheme", "attention_fused") if row.get(k) is not None)
        print(
            f"| {row['target']} | {row['status']} | {row['size_mb']:.1f} | {row['held_out_accuracy']:.4f} | "
            f"{row['agreement_with_torch']:.4f} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | {row['fps']:.1f} | "
            f"{row['speedup']:.2f}x | {notes} |"
        )
    print(f"torch (pruned, fp32) held-out accuracy on the same images: {torch_accuracy:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"setting": setting, "torch_accuracy": torch_accuracy, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
