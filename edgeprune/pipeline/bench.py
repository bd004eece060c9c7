"""`edgeprune bench`: latency and held-out-domain accuracy of the engines of a run, against its torch models."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.bench.accuracy import runner_predictions
from edgeprune.bench.latency import measure_latency
from edgeprune.bench.report import BenchGate, to_markdown
from edgeprune.errors import EdgepruneError
from edgeprune.export.compare import TOLERANCES
from edgeprune.export.engines import make_runner
from edgeprune.export.runners import OrtRunner
from edgeprune.hardware import describe_device
from edgeprune.models.artifact import load_model
from edgeprune.pipeline.context import RunData, cached_predictions, eval_loader, labels_of, require_complete
from edgeprune.profiles import Profile, load_profile, read_profile_file
from edgeprune.progress import Reporter
from edgeprune.prune.counting import count_macs, count_params
from edgeprune.targets import DEFAULT_TARGET, Target, resolve_target
from edgeprune.train import accuracy, predict
from edgeprune.workspace import (
    Run,
    Workspace,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    read_json,
    utc_now,
)

PERCENTILES = ("p50", "p90", "p99", "mean")


@dataclass
class BenchRequest:
    target: str | None = None  # default: the profile's default target, else ort-cpu
    domain: str | None = None
    data: Path | None = None  # the run's data set, where it is mounted elsewhere than when the run was made
    batch: int | None = None  # default: the profile's opt batch, else 1
    threads: int | None = None  # default: the profile's threads, else all cores
    warmup: int = 10
    iterations: int = 50
    max_images: int | None = None
    profile: str | None = None  # a profile's batch, threads and gate (latency budget, accuracy drop) apply
    min_agreement: float | None = None  # default: by precision (fp32 0.99, fp16 0.98, int8 0.97)
    max_engine_drop: float = 0.01
    max_drop: float | None = None  # default: the profile's max_accuracy_drop, else not checked

    def gate(self, target: Target, profile: Profile | None) -> BenchGate:
        return BenchGate(
            min_agreement=self.min_agreement
            if self.min_agreement is not None
            else TOLERANCES[target.precision].min_top1_agreement,
            max_engine_drop=self.max_engine_drop,
            max_baseline_drop=self.max_drop
            if self.max_drop is not None or profile is None
            else profile.gate.max_accuracy_drop,
            latency_budget_ms=profile.gate.latency_budget_ms if profile else None,
        )


def _engine_paths(run: Run, target: str) -> tuple[dict[str, Path], dict[str, Any]]:
    build_file = run.stage("engines") / target / "build.json"
    if not build_file.exists():
        raise EdgepruneError(f"run '{run.name}' has no {target} engine: run `edgeprune export --target {target}` first")
    build = read_json(build_file)
    paths = {}
    for name, engine in build["engines"].items():
        path = run.dir / engine["path"]
        if "bundle" in engine:
            if not path.exists() or not (run.dir / engine["bundle"] / "build.json").exists():
                raise EdgepruneError(
                    f"the {target} engines of run '{run.name}' are deploy bundles not built yet: on the device, run "
                    f"`edgeprune build {run.dir / engine['bundle']}` for model and baseline, then bench there"
                )
        elif not path.exists() or file_sha256(path) != engine["sha256"]:
            raise EdgepruneError(
                f"{path} no longer matches its build record: rebuild it with `edgeprune export --target {target}`"
            )
        paths[name] = path
    for name, stage in (("model", "finetuned"), ("baseline", "baseline")):
        if file_sha256(run.stage(stage) / "model.safetensors") != build["model_sha256"][name]:
            raise EdgepruneError(
                f"the {target} engine was built from an older {stage} model: "
                f"re-run `edgeprune export --target {target}`"
            )
    return paths, build


def run_bench(
    workspace: Workspace, request: BenchRequest, run_name: str | None = None, reporter: Reporter | None = None
) -> tuple[Run, dict[str, Any]]:
    reporter = reporter or Reporter()
    profile = load_profile(request.profile) if request.profile else None
    target = resolve_target(request.target or (profile.default_target if profile else DEFAULT_TARGET))
    batch_size = request.batch or (profile.batch.opt if profile else 1)
    threads = request.threads or (profile.backend.threads if profile else None)
    if batch_size < 1:
        raise EdgepruneError("--batch must be at least 1")
    run = workspace.get_run(run_name)
    manifest = require_complete(run)
    engines, build = _engine_paths(run, target.name)
    built_for = read_profile_file(run.stage("engines") / target.name / "profile.toml")
    data = RunData.from_manifest(manifest, reporter, request.data)
    domain = request.domain or data.split.target
    samples = data.domain_samples(domain)
    if request.max_images:
        samples = samples[:: max(1, len(samples) // request.max_images)][: request.max_images]
    labels = labels_of(samples)

    baseline, pruned = load_model(run.stage("baseline")), load_model(run.stage("finetuned"))
    counts = {
        "macs": (count_macs(baseline), count_macs(pruned)),
        "params": (count_params(baseline), count_params(pruned)),
    }
    loader = eval_loader(pruned, samples)
    preds = {
        "baseline": cached_predictions(
            run.stage("baseline"),
            domain,
            samples,
            lambda: predict(baseline, loader, reporter=reporter, description="baseline torch")[0],
        ),
        "pruned_torch": cached_predictions(
            run.stage("finetuned"),
            domain,
            samples,
            lambda: predict(pruned, loader, reporter=reporter, description="pruned torch")[0],
        ),
    }
    cache = run.stage("engines") / target.name / "provider-cache"
    # TensorRT engines take at most the profile's max batch; a fixed-shape (DLA) engine exactly that batch.
    engine_batch = min(64, built_for.batch.max) if target.fixed_batch_limits else 64
    fixed = engine_batch if target.fixed_batch_limits and built_for.batch.min == built_for.batch.max else None
    engine_loader = eval_loader(pruned, samples, batch_size=engine_batch)
    latency_samples = [samples[i % len(samples)] for i in range(batch_size)]
    batch = next(iter(eval_loader(pruned, latency_samples, batch_size=batch_size)))[0].numpy()
    latency = {}
    with contextlib.ExitStack() as stack:  # every runner is closed, whatever happens
        runners = {
            name: stack.enter_context(make_runner(target, path, built_for, threads, cache))
            for name, path in engines.items()
        }
        for name, key in (("model", "engine"), ("baseline", "baseline_engine")):
            preds[key] = runner_predictions(
                runners[name].infer, engine_loader, reporter, f"{target.name} {name}", fixed
            )
        if target.compare_with_fp32_on_cpu:
            runners["fp32"] = stack.enter_context(OrtRunner(run.stage("export") / "model.onnx", threads=threads))
        for name, runner in runners.items():
            with reporter.task(f"latency {name}", None):
                latency[name] = measure_latency(
                    runner.infer, batch, warmup=request.warmup, iterations=request.iterations
                )

    seen = domain in data.split.sources
    report: dict[str, Any] = {
        "run": run.name,
        "target": target.name,
        "engine_profile": built_for.name,
        "profile": profile.name if profile else None,
        "domain": domain,
        "domain_seen_in_training": seen,
        "images": len(samples),
        "batch": batch_size,
        "threads": threads,
        "accuracy": {k: accuracy(v, labels) for k, v in preds.items()},
        "agreement": accuracy(preds["engine"], preds["pruned_torch"]),
        "baseline_agreement": accuracy(preds["baseline_engine"], preds["baseline"]),
        "latency_ms": {k: latency["model"][k] for k in PERCENTILES},
        "baseline_latency_ms": {k: latency["baseline"][k] for k in PERCENTILES},
        "iterations": request.iterations,
        "warmup": request.warmup,
        "throughput_ips": latency["model"]["throughput_ips"],
        "baseline_throughput_ips": latency["baseline"]["throughput_ips"],
        "macs": dict(zip(("baseline", "pruned"), counts["macs"], strict=True)),
        "params": dict(zip(("baseline", "pruned"), counts["params"], strict=True)),
        "speedup": latency["baseline"]["p50"] / latency["model"]["p50"],
        **(
            {
                "speedup_over_fp32": latency["fp32"]["p50"] / latency["model"]["p50"],
                "fp32_latency_ms": {k: latency["fp32"][k] for k in PERCENTILES},
            }
            if "fp32" in latency
            else {}
        ),
        "device": describe_device(),
        "measured": utc_now(),
    }
    report["gate"] = request.gate(target, profile).judge(report)
    stem = f"{target.name}-{domain}"
    atomic_write_json(run.stage("bench") / f"{stem}.json", report)
    atomic_write_text(run.stage("bench") / f"{stem}.md", to_markdown(report))
    reports = [read_json(p) for p in sorted(run.stage("bench").glob("*.json"))]
    atomic_write_text(run.stage("bench") / "report.md", "\n".join(to_markdown(r) for r in reports))
    if seen:
        reporter.info(f"[yellow]note: {domain} is a source domain of this run: it was seen in training")
    return run, report
