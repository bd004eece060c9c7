"""`edgeprune export`, `build`, `bench` and `demo`: engines from a run, and their measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    EXIT_GATE_FAILED,
    EXIT_SOME_FAILED,
    DataOpt,
    JsonOpt,
    RunOpt,
    TargetName,
    WorkspaceOpt,
    app,
    out,
    plain,
    print_json,
    reporter,
    say,
    screen,
    user_errors,
    workspace_at,
)
from edgeprune.cli.choices import completer, profile_option
from edgeprune.cli.render import print_bench, print_bench_table, print_export
from edgeprune.requests import DEFAULT_OPSET, BenchRequest, ExportRequest
from edgeprune.results import BenchReport, ExportSummary
from edgeprune.targets import ALL_TARGETS as ALL
from edgeprune.targets import TARGETS

_E, _B = ExportRequest, BenchRequest  # the defaults

ProfileOpt = profile_option(
    "its batch range, TensorRT settings and gate \\[default: server-gpu for GPU targets, cpu-x86 / cpu-arm64 "
    "otherwise]."
)
BenchProfileOpt = profile_option("its batch, threads and gate apply.")
MinAgreementOpt = Annotated[
    float | None,
    typer.Option(help="Gate: engine/torch top-1 agreement \\[default: fp32 0.99, fp16 0.98, int8 0.97].", min=0, max=1),
]
MaxDropOpt = Annotated[
    float | None,
    typer.Option(help="Gate: engine accuracy below the unpruned baseline's \\[default: the profile's, else none]."),
]
TargetOpt = Annotated[TargetName | None, typer.Option(help="What to build \\[default: the profile's, else ort-cpu].")]


@app.command()
@user_errors
def export(
    target: TargetOpt = None,
    profile: ProfileOpt = _E.profile,
    run: RunOpt = None,
    parity_images: Annotated[int, typer.Option(help="Held-out images for the torch/ONNX parity check.", min=1)] = (
        _E.parity_images
    ),
    opset: Annotated[int, typer.Option(help=f"ONNX opset (>= {DEFAULT_OPSET}).", min=DEFAULT_OPSET)] = _E.opset,
    force: Annotated[bool, typer.Option("--force", help="Export the ONNX files again even if up to date.")] = _E.force,
    data: DataOpt = _E.data,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export the run's pruned (and baseline) model to ONNX, check parity, build the target's engine.

    Where TensorRT is not installed, TensorRT targets write a deploy bundle (ONNX, profile, calibration data,
    build.sh with the exact trtexec command) to build on the device with `edgeprune build`.

    Examples:

      edgeprune export --target ort-cpu

      edgeprune export --target ort-cpu-int8 --profile cpu-x86

      edgeprune export --target trt-fp16 --profile jetson-orin-nano
    """
    from edgeprune.pipeline.export import run_export

    request = ExportRequest(plain(target), profile, parity_images, opset, force, data)
    result, parity, build = run_export(workspace_at(workspace), request, run, reporter())
    bundle = build.engines["model"].bundle
    bundle_folder = result.dir / bundle if bundle else None
    print_export(screen(json_out), result.name, parity, build, bundle_folder)
    if json_out:
        bundle_text = str(bundle_folder) if bundle_folder else None
        summary = ExportSummary(run=result.name, dir=str(result.dir), parity=parity, build=build, bundle=bundle_text)
        print_json(summary.to_json())


@app.command()
@user_errors
def build(
    bundle: Annotated[Path, typer.Argument(help="A deploy bundle folder written by `edgeprune export`.")],
    json_out: JsonOpt = False,
) -> None:
    """Build a TensorRT engine from a deploy bundle, on the device (needs TensorRT).

    Example:

      edgeprune build edgeprune-runs/my-run/engines/trt-fp16/model
    """
    from edgeprune.export.tensorrt import ENGINE_FILE, build_bundle

    build_bundle(bundle)
    if json_out:
        print_json({"bundle": str(bundle), "engine": str(bundle / ENGINE_FILE)})
    else:
        say(out, f"engine: {bundle / ENGINE_FILE}")


def _split_targets(value: str | None) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()] if value else []


def _check_targets(value: str | None) -> str | None:
    """Each name a known target, or 'all' alone; checked before anything heavy is imported."""
    names = _split_targets(value)
    unknown = [t for t in names if t not in TARGETS and t != ALL]
    if unknown or (ALL in names and len(names) > 1):
        raise typer.BadParameter(
            f"{', '.join(unknown) or value}: give targets from {', '.join(TARGETS)} (comma list), or 'all' alone"
        )
    return value


@app.command()
@user_errors
def bench(
    domain: Annotated[
        str | None, typer.Option(help="Domain to measure accuracy on \\[default: the run's held-out domain].")
    ] = _B.domain,
    target: Annotated[
        str | None,
        typer.Option(
            help="Engine(s) to benchmark, built by `edgeprune export`: one, a comma list, or 'all' (every target "
            "built for the run: one row each) \\[default: the profile's, else ort-cpu].",
            autocompletion=completer(lambda: [*TARGETS, ALL]),
            callback=_check_targets,
        ),
    ] = None,
    profile: BenchProfileOpt = _B.profile,
    batch: Annotated[
        int | None,
        typer.Option(help="Batch size of the latency measurement \\[default: profile's opt, else 1].", min=1),
    ] = _B.batch,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads \\[default: profile's, else all cores].", min=1)
    ] = _B.threads,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.", min=0)] = _B.warmup,
    iterations: Annotated[int, typer.Option(help="Timed runs.", min=1)] = _B.iterations,
    max_images: Annotated[
        int | None, typer.Option(help="Evaluate on an even sample of at most N images.", min=1)
    ] = _B.max_images,
    min_agreement: MinAgreementOpt = _B.min_agreement,
    max_engine_drop: Annotated[float, typer.Option(help="Gate: engine accuracy below torch's.")] = _B.max_engine_drop,
    max_drop: MaxDropOpt = _B.max_drop,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain/--no-explain",
            help="onnxruntime CPU targets: profile both engines and write where the time goes (per part of the "
            "model with its MACs, per op type) into the report.",
        ),
    ] = _B.explain,
    run: RunOpt = None,
    data: DataOpt = _B.data,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Latency and held-out accuracy of the baseline, the pruned torch model and the engine (exit 3: gate failed).

    With several targets (or all), one row per target: size, accuracy, agreement with torch, p50/p90, FPS and
    speed-up over the unpruned model on that target; a target that fails is a failed row (exit 1), not a stop.

    Examples:

      edgeprune bench

      edgeprune bench --target all

      edgeprune bench --domain sketch --target ort-cpu --batch 8 --threads 2

      edgeprune bench --target ort-cpu-int8 --profile cpu-x86
    """
    from edgeprune.pipeline.bench import run_bench, run_bench_targets

    targets = _split_targets(target)
    request = BenchRequest(
        targets[0] if len(targets) == 1 else None, domain, data, batch, threads, warmup, iterations, max_images,
        profile, min_agreement, max_engine_drop, max_drop, explain,
    )  # fmt: skip
    if len(targets) <= 1 and targets != [ALL]:
        result, report = run_bench(workspace_at(workspace), request, run, reporter())
        _print_bench(report, result.bench_path(report.target, report.domain), json_out)
        return
    _, table = run_bench_targets(workspace_at(workspace), request, targets, run, reporter())
    print_bench_table(screen(json_out), table)
    if json_out:
        print_json(table.to_json())
    if any(row.status == "failed" for row in table.rows):
        raise typer.Exit(EXIT_SOME_FAILED)
    if not table.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


@app.command()
@user_errors
def demo(
    run: Annotated[
        str | None, typer.Option("--run", help="Name of the demo run \\[default: vit-micro-hessian-r0.5-<time>].")
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The whole path offline: built-in data set, a 4-block ViT from its bundled pre-trained weights fine-tuned on
    photo, art_painting and cartoon (shape augmentation), pruned at 0.5 (hessian), exported to onnxruntime,
    benchmarked on the held-out sketch domain.

    Example:

      edgeprune demo --workspace /tmp/edgeprune-demo
    """
    from edgeprune.pipeline.demo import run_demo

    result, report = run_demo(workspace_at(workspace), run_name=run, reporter=reporter())
    _print_bench(report, result.bench_path(report.target, report.domain), json_out)


def _print_bench(report: BenchReport, path: Path, json_out: bool) -> None:
    """The report's table and file (on stderr with --json, the report on stdout); exit 3 when its gate failed."""
    print_bench(screen(json_out), report, path)
    if json_out:
        print_json(report.to_json())
    if not report.passed:
        raise typer.Exit(EXIT_GATE_FAILED)
