"""`edgeprune bench`: latency and held-out-domain accuracy of the engines of a run, against its torch models."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from edgeprune.bench.accuracy import runner_predictions
from edgeprune.bench.breakdown import latency_breakdown, trt_latency_breakdown
from edgeprune.bench.latency import measure_interleaved
from edgeprune.bench.report import BenchGate, to_markdown
from edgeprune.data.domains import Sample
from edgeprune.errors import EdgepruneError
from edgeprune.export.compare import TOLERANCES
from edgeprune.export.engines import make_runner
from edgeprune.export.runners import OrtRunner
from edgeprune.hardware import capped_threads, describe_device
from edgeprune.models.artifact import WEIGHTS_FILE, load_model
from edgeprune.pipeline.context import RunData, cached_predictions, complete_run, eval_loader, labels_of
from edgeprune.profiles import Profile, load_profile, read_profile_file
from edgeprune.progress import Reporter
from edgeprune.prune.counting import count_macs, count_params
from edgeprune.requests import BenchRequest
from edgeprune.results import BenchReport, BenchTable, BuildRecord, LatencyBreakdown, PredictionSpread, TargetBench
from edgeprune.targets import ALL_TARGETS, DEFAULT_TARGET, Target, resolve_target
from edgeprune.train import accuracy, predict
from edgeprune.workspace import BUILD_FILE, Run, Workspace, atomic_write_text, file_sha256, utc_now

__all__ = ["BenchRequest", "bench_gate", "run_bench"]

PERCENTILES = ("p50", "p90", "p99", "mean")


def bench_gate(request: BenchRequest, target: Target, profile: Profile | None) -> BenchGate:
    """The request's thresholds, else the profile's, else the comparator's table for the target's precision."""
    return BenchGate(
        min_agreement=request.min_agreement
        if request.min_agreement is not None
        else TOLERANCES[target.precision].min_top1_agreement,
        max_engine_drop=request.max_engine_drop,
        max_baseline_drop=request.max_drop
        if request.max_drop is not None or profile is None
        else profile.gate.max_accuracy_drop,
        latency_budget_ms=profile.gate.latency_budget_ms if profile else None,
    )


def _engine_paths(run: Run, target: str) -> tuple[dict[str, Path], BuildRecord]:
    if not run.build_record_path(target).exists():
        raise EdgepruneError(f"run '{run.name}' has no {target} engine: run `edgeprune export --target {target}` first")
    build = run.build_record(target)
    paths = {}
    for name, engine in build.engines.items():
        path = run.dir / engine.path
        if engine.bundle is not None:
            if not path.exists() or not (run.dir / engine.bundle / BUILD_FILE).exists():
                raise EdgepruneError(
                    f"the {target} engines of run '{run.name}' are deploy bundles not built yet: on the device, run "
                    f"`edgeprune build {run.dir / engine.bundle}` for model and baseline, then bench there"
                )
        elif not path.exists() or file_sha256(path) != engine.sha256:
            raise EdgepruneError(
                f"{path} no longer matches its build record: rebuild it with `edgeprune export --target {target}`"
            )
        paths[name] = path
    for name, stage in (("model", "finetuned"), ("baseline", "baseline")):
        if file_sha256(run.stage(stage) / WEIGHTS_FILE) != build.model_sha256[name]:
            raise EdgepruneError(
                f"the {target} engine was built from an older {stage} model: "
                f"re-run `edgeprune export --target {target}`"
            )
    return paths, build


@dataclass
class _Setting:
    """What one bench measures: the engine, on which images, at which batch and threads."""

    target: Target
    profile: Profile | None
    built_for: Profile
    engines: dict[str, Path]
    samples: list[Sample]
    classes: tuple[str, ...]
    domain: str
    seen: bool
    batch: int
    threads: int | None


def _threads(request: BenchRequest, profile: Profile | None, reporter: Reporter) -> int | None:
    """The request's threads, else the profile's; capped, with a warning, at the cores this machine has."""
    asked = request.threads or (profile.backend.threads if profile else None)
    threads = capped_threads(asked)
    if threads != asked:
        source = f"profile {profile.name}" if profile and not request.threads else "--threads"
        reporter.info(
            f"[yellow]warning:[/] {source} asks for {asked} threads; this machine has {threads} cores: using {threads}"
        )
    return threads


def _setting(run: Run, request: BenchRequest, reporter: Reporter) -> _Setting:
    profile = load_profile(request.profile) if request.profile else None
    target = resolve_target(request.target or (profile.default_target if profile else DEFAULT_TARGET))
    engines, _ = _engine_paths(run, target.name)
    data = RunData.from_manifest(run.manifest(), reporter, request.data)
    domain = request.domain or data.split.target
    samples = data.domain_samples(domain)
    if request.max_images:
        samples = samples[:: max(1, len(samples) // request.max_images)][: request.max_images]
    return _Setting(
        target=target,
        profile=profile,
        built_for=read_profile_file(run.engine_dir(target.name) / "profile.toml"),
        engines=engines,
        samples=samples,
        classes=tuple(data.dataset.classes),
        domain=domain,
        seen=domain in data.split.sources,
        batch=request.batch or (profile.batch.opt if profile else 1),
        threads=_threads(request, profile, reporter),
    )


def _torch_predictions(run: Run, s: _Setting, models: dict[str, nn.Module], reporter: Reporter) -> dict:
    loader = eval_loader(models["finetuned"], s.samples)
    return {
        key: cached_predictions(
            run.stage(stage),
            s.domain,
            s.samples,
            lambda stage=stage, what=what: predict(models[stage], loader, reporter=reporter, description=what)[0],
        )
        for key, stage, what in (
            ("baseline", "baseline", "baseline torch"),
            ("pruned_torch", "finetuned", "pruned torch"),
        )
    }


def _engine_runs(
    run: Run, s: _Setting, model: nn.Module, batch: np.ndarray, request: BenchRequest, reporter: Reporter
) -> tuple[dict[str, list[int]], dict[str, dict[str, float]]]:
    """Predictions of both engines on the images, and the latency of every runner on one batch."""
    cache = run.engine_dir(s.target.name) / "provider-cache"
    # TensorRT engines take at most the profile's max batch; a fixed-shape (DLA) engine exactly that batch.
    limits = s.target.fixed_batch_limits
    engine_batch = min(64, s.built_for.batch.max) if limits else 64
    fixed = engine_batch if limits and s.built_for.batch.min == s.built_for.batch.max else None
    engine_loader = eval_loader(model, s.samples, batch_size=engine_batch)
    preds, latency = {}, {}
    with contextlib.ExitStack() as stack:  # every runner is closed, whatever happens
        runners = {
            name: stack.enter_context(make_runner(s.target, path, s.built_for, s.threads, cache))
            for name, path in s.engines.items()
        }
        for name, key in (("model", "engine"), ("baseline", "baseline_engine")):
            preds[key] = runner_predictions(
                runners[name].infer, engine_loader, reporter, f"{s.target.name} {name}", fixed
            )
        if s.target.compare_with_fp32_on_cpu:
            runners["fp32"] = stack.enter_context(OrtRunner(run.stage("export") / "model.onnx", threads=s.threads))
        with reporter.task(f"latency of {', '.join(runners)} in alternating rounds", None):
            latency = measure_interleaved(
                {name: runner.infer for name, runner in runners.items()},
                batch,
                warmup=request.warmup,
                iterations=request.iterations,
            )
    return preds, latency


def _percentiles(latency: dict[str, float]) -> dict[str, float]:
    return {k: latency[k] for k in PERCENTILES}


def _latency_batch(model: nn.Module, s: _Setting) -> np.ndarray:
    """The batch every latency is measured on: the domain's first images, repeated up to the batch size."""
    latency_samples = [s.samples[i % len(s.samples)] for i in range(s.batch)]
    return next(iter(eval_loader(model, latency_samples, batch_size=s.batch)))[0].numpy()


def _breakdown(
    s: _Setting, request: BenchRequest, models: dict[str, nn.Module], batch: np.ndarray
) -> LatencyBreakdown | None:
    """Per part and per op type, baseline vs pruned: onnxruntime's profiler on CPU engines; for TensorRT engines the
    per-layer profiles that the bundle's build.sh wrote beside them (`trtexec --exportProfile`), where present."""
    if not request.explain:
        return None
    pair = {"baseline": models["baseline"], "pruned": models["finetuned"]}
    if s.target.tensorrt_engine:
        return trt_latency_breakdown(s.engines, pair)
    if not s.target.onnxruntime_cpu:
        return None
    return latency_breakdown(s.engines, pair, batch, s.threads)


def _report(
    run: Run, s: _Setting, request: BenchRequest, preds: dict, latency: dict, models: dict[str, nn.Module]
) -> BenchReport:
    labels = labels_of(s.samples)
    fp32 = (
        {"speedup_over_fp32": latency["fp32"]["p50"] / latency["model"]["p50"],
         "fp32_latency_ms": _percentiles(latency["fp32"])}
        if "fp32" in latency
        else {}
    )  # fmt: skip
    baseline, pruned = models["baseline"], models["finetuned"]
    report = BenchReport(
        run=run.name,
        target=s.target.name,
        engine_profile=s.built_for.name,
        profile=s.profile.name if s.profile else None,
        domain=s.domain,
        domain_seen_in_training=s.seen,
        images=len(s.samples),
        batch=s.batch,
        threads=s.threads,
        accuracy={k: accuracy(v, labels) for k, v in preds.items()},
        agreement=accuracy(preds["engine"], preds["pruned_torch"]),
        baseline_agreement=accuracy(preds["baseline_engine"], preds["baseline"]),
        latency_ms=_percentiles(latency["model"]),
        baseline_latency_ms=_percentiles(latency["baseline"]),
        iterations=request.iterations,
        warmup=request.warmup,
        throughput_ips=latency["model"]["throughput_ips"],
        baseline_throughput_ips=latency["baseline"]["throughput_ips"],
        macs={"baseline": count_macs(baseline), "pruned": count_macs(pruned)},
        params={"baseline": count_params(baseline), "pruned": count_params(pruned)},
        speedup=latency["baseline"]["p50"] / latency["model"]["p50"],
        **fp32,
        device=describe_device(),
        measured=utc_now(),
        chance_accuracy=1 / len(s.classes),
        prediction_spread={k: PredictionSpread.of(v, s.classes) for k, v in preds.items()},
    )
    report.gate = bench_gate(request, s.target, s.profile).judge(report)
    return report


def run_bench(
    workspace: Workspace, request: BenchRequest, run_name: str | None = None, reporter: Reporter | None = None
) -> tuple[Run, BenchReport]:
    request.validate()
    reporter = reporter or Reporter()
    run = complete_run(workspace, run_name, reporter)
    with run.writing("bench"):
        setting = _setting(run, request, reporter)
        models = {stage: load_model(run.stage(stage)) for stage in ("baseline", "finetuned")}
        preds = _torch_predictions(run, setting, models, reporter)
        batch = _latency_batch(models["finetuned"], setting)  # one batch for every latency and the breakdown
        engine_preds, latency = _engine_runs(run, setting, models["finetuned"], batch, request, reporter)
        report = _report(run, setting, request, {**preds, **engine_preds}, latency, models)
        with reporter.task("latency breakdown per part", None):
            report.breakdown = _breakdown(setting, request, models, batch)
        report.write(run.bench_path(setting.target.name, setting.domain))
        atomic_write_text(run.bench_path(setting.target.name, setting.domain, ".md"), to_markdown(report))
        atomic_write_text(run.stage("bench") / "report.md", "\n".join(to_markdown(r) for r in run.bench_reports()))
    if setting.seen:
        reporter.info(f"[yellow]note: {setting.domain} is a source domain of this run: it was seen in training")
    return run, report


def built_targets(run: Run) -> list[str]:
    """The targets `edgeprune export` has built for the run (those with a build record)."""
    folder = run.stage("engines")
    return sorted(p.parent.name for p in folder.glob(f"*/{BUILD_FILE}")) if folder.is_dir() else []


def _engine_size_mb(run: Run, target: str) -> float | None:
    engine = run.build_record(target).engines["model"]
    path = run.dir / engine.path
    files = [path, *path.parent.glob(f"{path.name}.data")]  # ONNX external data, where there is any
    return round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 3) or None


def _row(run: Run, report: BenchReport) -> TargetBench:
    return TargetBench(
        target=report.target,
        status="ok",
        size_mb=_engine_size_mb(run, report.target),
        accuracy=report.accuracy.get("engine"),
        torch_accuracy=report.accuracy.get("pruned_torch"),
        agreement=report.agreement,
        p50_ms=report.latency_ms.get("p50"),
        p90_ms=report.latency_ms.get("p90"),
        fps=report.throughput_ips,
        speedup=report.speedup,
        gate_passed=report.passed,
        report=str(run.bench_path(report.target, report.domain)),
        dominated=report.dominated() or None,
    )


def run_bench_targets(
    workspace: Workspace,
    request: BenchRequest,
    targets: list[str],
    run_name: str | None = None,
    reporter: Reporter | None = None,
) -> tuple[Run, BenchTable]:
    """`run_bench` for each target (`all`: every target built for the run); a target that fails is a failed row
    with its error, and the others are measured all the same."""
    reporter = reporter or Reporter()
    run = complete_run(workspace, run_name, reporter)
    names = built_targets(run) if targets == [ALL_TARGETS] else targets
    if not names:
        raise EdgepruneError(f"run '{run.name}' has no engines yet: run `edgeprune export --target ort-cpu` first")
    rows = []
    domain, chance = request.domain, None
    for target in names:
        try:
            _, report = run_bench(workspace, replace(request, target=target), run.name, reporter)
        except EdgepruneError as exc:
            reporter.info(f"[red]{target}: {exc}")
            rows.append(TargetBench(target=target, status="failed", error=" ".join(str(exc).split())))
            continue
        rows.append(_row(run, report))
        domain, chance = report.domain, report.chance_accuracy
    return run, BenchTable(run=run.name, domain=domain, rows=rows, chance_accuracy=chance)
