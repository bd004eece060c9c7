"""The `edgeprune` command line: options, help, rich output and exit codes. The work is in edgeprune.pipeline."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from edgeprune.config import METRICS, NORMALIZATIONS
from edgeprune.errors import EdgepruneError
from edgeprune.targets import TARGETS

app = typer.Typer(
    help="Prune vision transformers with grouped structural global pruning, export them to ONNX engines, and "
    "benchmark latency and held-out-domain accuracy.\n\n"
    "Example: edgeprune demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="The built-in data set.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
EXIT_ERROR = 2
EXIT_GATE_FAILED = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

# Choices that --help lists and the shell completes, declared where the library declares them.
Metric = enum.Enum("Metric", {m: m for m in METRICS}, type=str)
Normalization = enum.Enum("Normalization", {n: n for n in NORMALIZATIONS}, type=str)
TargetName = enum.Enum("TargetName", {t.replace("-", "_"): t for t in TARGETS}, type=str)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Folder of runs \\[default: $EDGEPRUNE_WORKSPACE or ./edgeprune-runs]."),
]
DataOpt = Annotated[
    Path | None, typer.Option(help="The run's data set, if it now lives elsewhere than when the run was made.")
]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run name \\[default: the latest run].")]


def user_errors(func: F) -> F:
    """One line and a non-zero exit for errors the user can fix; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgepruneError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: finished stages are kept; `edgeprune prune --resume` continues a run")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _workspace(path: Path | None) -> Any:
    from edgeprune.workspace import Workspace, resolve_workspace

    return Workspace(resolve_workspace(path))


def _reporter() -> Any:
    from edgeprune.progress import RichReporter

    return RichReporter(err)


@app.command()
@user_errors
def prune(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Alias (vit, deit, beit, deit-tiny, vit-micro, ...) or any timm model name."
        ),
    ] = None,
    ratio: Annotated[
        float, typer.Option(help="Fraction of all prunable channels and head dims to remove, in (0, 1).")
    ] = 0.5,
    metric: Annotated[Metric, typer.Option(help="Importance metric.")] = Metric.hessian,
    data: Annotated[
        Path | None, typer.Option(help="DG data set ROOT/<domain>/<class>/<images> \\[default: the built-in data set].")
    ] = None,
    target_domain: Annotated[str, typer.Option(help="Domain held out of training and pruning.")] = "sketch",
    checkpoint: Annotated[Path | None, typer.Option(help="Weights: .safetensors or .pth state dict.")] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Start from random weights (latency studies, tests).")
    ] = False,
    baseline_epochs: Annotated[int, typer.Option(help="Fine-tune the unpruned model first (0 = as loaded).")] = 0,
    epochs: Annotated[int, typer.Option(help="Fine-tune epochs after pruning (0 = none).")] = 1,
    baseline_run: Annotated[str | None, typer.Option(help="Reuse the baseline of this earlier run.")] = None,
    prune_heads: Annotated[bool, typer.Option("--prune-heads", help="Also remove whole attention heads.")] = False,
    round_to: Annotated[int | None, typer.Option(help="Keep pruned widths multiples of N.")] = None,
    target_macs: Annotated[
        float | None, typer.Option(help="Keep this fraction of the MACs instead of using --ratio (e.g. 0.4).")
    ] = None,
    target_params: Annotated[
        float | None, typer.Option(help="Keep this fraction of the parameters instead of using --ratio.")
    ] = None,
    normalization: Annotated[
        Normalization,
        typer.Option(
            help="How importance compares across groups: none (raw), mean or max (per group), cost (importance "
            "per multiply-accumulate removed); auto = none for hessian and taylor, mean for the others."
        ),
    ] = Normalization.auto,
    max_share: Annotated[
        float | None,
        typer.Option(help="Balance: no group loses more than this share of its units unless the amount needs it."),
    ] = None,
    compensate: Annotated[
        bool,
        typer.Option(
            "--compensate/--no-compensate",
            help="Fold removed units' mean contribution into the next bias and correct LayerNorm statistics.",
        ),
    ] = True,
    allow_narrow: Annotated[
        bool, typer.Option("--allow-narrow", help="Let the embedding fall below 8 channels and heads below 4 dims.")
    ] = False,
    distill: Annotated[
        bool,
        typer.Option(
            "--distill/--no-distill",
            help="Fine-tune against the baseline's soft outputs too (measured: more source accuracy, less held-out).",
        ),
    ] = False,
    distill_weight: Annotated[float, typer.Option(help="Share of the distillation term in the loss.")] = 0.5,
    distill_temperature: Annotated[float, typer.Option(help="Softmax temperature of distillation.")] = 2.0,
    steps: Annotated[int, typer.Option(help="Prune in this many steps, with a short recovery between.")] = 1,
    recovery_steps: Annotated[int, typer.Option(help="Training steps of each recovery between pruning steps.")] = 50,
    calib_batches: Annotated[int, typer.Option(help="Source-domain batches that importance sees.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Training and calibration batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate after pruning (AdamW, cosine).")] = 1e-4,
    baseline_lr: Annotated[
        float | None, typer.Option(help="Peak learning rate of the baseline \\[default: --lr].")
    ] = None,
    max_steps_per_epoch: Annotated[int | None, typer.Option(help="Cap training steps per epoch.")] = None,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and training.")] = 0,
    run: Annotated[str | None, typer.Option("--run", help="Name of the new run (or of the run to resume).")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run with its saved options (other options are ignored)."
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Load and adapt a model, fine-tune it on the source domains, prune it globally, fine-tune it again.

    Examples:

      edgeprune prune --model deit-tiny --checkpoint deit_tiny.safetensors --data PACS --target-domain sketch \\
        --ratio 0.5 --metric hessian --baseline-epochs 1 --epochs 1

      edgeprune prune --model vit-micro --random-init --baseline-epochs 20 --epochs 5

      edgeprune prune --resume --run my-run
    """
    from edgeprune.pipeline.prune import PruneRequest, resume_prune, run_prune

    ws = _workspace(workspace)
    if resume:
        result = resume_prune(ws, run, _reporter())
    else:
        if model is None:
            raise EdgepruneError("give --model (e.g. --model deit-tiny), or --resume to continue a run")
        request = PruneRequest(
            model=model,
            ratio=ratio,
            metric=metric.value,
            data=data,
            target_domain=target_domain,
            checkpoint=checkpoint,
            random_init=random_init,
            baseline_epochs=baseline_epochs,
            epochs=epochs,
            baseline_run=baseline_run,
            prune_heads=prune_heads,
            round_to=round_to,
            target_macs=target_macs,
            target_params=target_params,
            calib_batches=calib_batches,
            batch_size=batch_size,
            lr=lr,
            baseline_lr=baseline_lr,
            max_steps_per_epoch=max_steps_per_epoch,
            workers=workers,
            seed=seed,
            normalization=normalization.value,
            max_share=max_share,
            compensate=compensate,
            allow_narrow=allow_narrow,
            distill=distill,
            distill_weight=distill_weight,
            distill_temperature=distill_temperature,
            steps=steps,
            recovery_steps=recovery_steps,
        )
        result = run_prune(request, ws, run_name=run, reporter=_reporter())
    _print_prune_summary(result)


def _print_prune_summary(run: Any) -> None:
    from edgeprune.workspace import read_json

    report = read_json(run.stage("pruned") / "prune_report.json")
    metrics = {s: read_json(run.stage(s) / "metrics.json") for s in ("baseline", "pruned", "finetuned")}
    table = Table(
        title=f"run {run.name}: {report['model']}, {report['metric']}, {report['ratio']:.3f} of the units removed"
    )
    for column in ("stage", "MACs", "params", "source val acc", f"held-out {metrics['baseline']['held_out_domain']}"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, m in metrics.items():
        key = "before" if stage == "baseline" else "after"
        table.add_row(
            stage,
            f"{report['macs'][key] / 1e6:.2f} M",
            f"{report['params'][key] / 1e6:.3f} M",
            f"{m['source_val_accuracy']:.4f}",
            f"{m['held_out_accuracy']:.4f}",
        )
    out.print(table)
    blocks = Table(title="per-block widths (before -> after)")
    for column in ("block", "embed", "heads", "head dim", "MLP hidden"):
        blocks.add_column(column, justify="right")
    for b in report["blocks"]:
        x, y = b["before"], b["after"]
        blocks.add_row(
            str(b["index"]), *(f"{x[k]} -> {y[k]}" for k in ("embed_dim", "heads", "head_dim", "mlp_hidden"))
        )
    out.print(blocks)


@app.command()
@user_errors
def export(
    target: Annotated[
        TargetName | None,
        typer.Option(help="What to build \\[default: the profile's, else ort-cpu]."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Hardware profile: a name from `edgeprune profiles` or a TOML file "
            "\\[default: server-gpu for GPU targets, cpu-x86 / cpu-arm64 otherwise]."
        ),
    ] = None,
    run: RunOpt = None,
    parity_images: Annotated[int, typer.Option(help="Held-out images for the torch/ONNX parity check.", min=1)] = 128,
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 17).", min=17)] = 17,
    force: Annotated[bool, typer.Option("--force", help="Export the ONNX files again even if up to date.")] = False,
    data: DataOpt = None,
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
    from edgeprune.pipeline.export import ExportRequest, run_export

    request = ExportRequest(
        target=target.value if target else None,
        profile=profile,
        parity_images=parity_images,
        opset=opset,
        force=force,
        data=data,
    )
    result, parity, build = run_export(_workspace(workspace), request, run, _reporter())
    table = Table(title=f"run {result.name}: export for {build['target']} ({build['profile']})")
    for column in ("model", "max |torch - onnx|", "top-1 agreement", "images", "engine"):
        table.add_column(column)
    for name in ("model", "baseline"):
        p = parity[name]
        table.add_row(
            name,
            f"{p['max_abs_diff']:.2e}",
            f"{p['top1_agreement']:.4f}",
            str(p["samples"]),
            build["engines"][name].get("bundle") or build["engines"][name]["path"],
        )
    out.print(table)
    for name, info in build.get("quantization", {}).items():
        a = info["agreement_with_fp32"]
        out.print(f"{name}: INT8 vs fp32 top-1 agreement {a['top1_agreement']:.4f} on {a['samples']} held-out images")
    for name, bundle in build.get("bundles", {}).items():
        if "fp16_agreement_with_fp32" in bundle:
            a = bundle["fp16_agreement_with_fp32"]
            out.print(f"{name}: float16 ONNX vs fp32 top-1 agreement {a['top1_agreement']:.4f} (onnxruntime CPU)")
    if "note" in build:
        out.print(f"[yellow]{build['note']}: edgeprune build {result.dir}/engines/{build['target']}/model")


@app.command()
@user_errors
def build(
    bundle: Annotated[Path, typer.Argument(help="A deploy bundle folder written by `edgeprune export`.")],
) -> None:
    """Build a TensorRT engine from a deploy bundle, on the device (needs TensorRT).

    Example:

      edgeprune build edgeprune-runs/my-run/engines/trt-fp16/model
    """
    from edgeprune.export.tensorrt import build_bundle

    record = build_bundle(bundle)
    out.print(f"engine: {bundle / record.get('engine', 'model.engine')}")


@app.command()
@user_errors
def profiles(
    name: Annotated[str | None, typer.Argument(help="Show one profile (a name or a TOML file).")] = None,
) -> None:
    """List the hardware profiles, or show one.

    Examples:

      edgeprune profiles

      edgeprune profiles jetson-orin-nano
    """
    from edgeprune.profiles import list_profiles, load_profile, profile_to_toml

    if name:
        chosen = load_profile(name)
        out.print(f"# {chosen.source}" if chosen.source else "", highlight=False)
        out.print(profile_to_toml(chosen), highlight=False, markup=False)
        return
    table = Table(title="hardware profiles")
    for column in ("name", "default target", "batch min/opt/max", "latency budget", "description"):
        table.add_column(column)
    for p in list_profiles():
        table.add_row(
            p.name,
            p.default_target,
            f"{p.batch.min}/{p.batch.opt}/{p.batch.max}",
            f"{p.gate.latency_budget_ms} ms",
            p.description,
        )
    out.print(table)


@app.command()
@user_errors
def bench(
    domain: Annotated[
        str | None, typer.Option(help="Domain to measure accuracy on \\[default: the run's held-out domain].")
    ] = None,
    target: Annotated[
        TargetName | None,
        typer.Option(
            help="Engine to benchmark (built by `edgeprune export`) \\[default: the profile's, else ort-cpu]."
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Hardware profile whose batch, threads and gate apply (name or TOML file).")
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(help="Batch size of the latency measurement \\[default: profile's opt, else 1].", min=1),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads \\[default: profile's, else all cores].", min=1)
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs.", min=0)] = 10,
    iterations: Annotated[int, typer.Option(help="Timed runs.", min=1)] = 50,
    max_images: Annotated[
        int | None, typer.Option(help="Evaluate on an even sample of at most N images.", min=1)
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(help="Gate: engine/torch top-1 agreement \\[default: fp32 0.99, fp16 0.98, int8 0.97]."),
    ] = None,
    max_engine_drop: Annotated[float, typer.Option(help="Gate: engine accuracy below torch's.")] = 0.01,
    max_drop: Annotated[
        float | None,
        typer.Option(help="Gate: engine accuracy below the unpruned baseline's \\[default: the profile's, else none]."),
    ] = None,
    run: RunOpt = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Latency and held-out accuracy of the baseline, the pruned torch model and the engine; exits 3 when the gate
    fails.

    Examples:

      edgeprune bench

      edgeprune bench --domain sketch --target ort-cpu --batch 8 --threads 2

      edgeprune bench --target ort-cpu-int8 --profile cpu-x86
    """
    from edgeprune.pipeline.bench import BenchRequest, run_bench

    request = BenchRequest(
        target=target.value if target else None,
        domain=domain,
        batch=batch,
        threads=threads,
        warmup=warmup,
        iterations=iterations,
        max_images=max_images,
        profile=profile,
        data=data,
        min_agreement=min_agreement,
        max_engine_drop=max_engine_drop,
        max_drop=max_drop,
    )
    result, report = run_bench(_workspace(workspace), request, run, _reporter())
    _print_bench(report, result.stage("bench") / f"{report['target']}-{report['domain']}.json")
    if not report["gate"]["passed"]:
        raise typer.Exit(EXIT_GATE_FAILED)


def _print_bench(report: dict[str, Any], path: Path) -> None:
    from edgeprune.bench.report import report_rows

    seen = "seen in training" if report["domain_seen_in_training"] else "held out"
    table = Table(
        title=f"{report['run']}: {report['target']} on {report['domain']} ({seen}), "
        f"batch {report['batch']}, {report['threads'] or 'all'} threads"
    )
    for column in ("", "baseline", "pruned"):
        table.add_column(column, justify="right" if column else "left")
    for row in report_rows(report):
        table.add_row(*row)
    out.print(table)
    gate = report["gate"]
    if gate["passed"]:
        out.print("[bold green]gate passed[/]")
    else:
        out.print("[bold red]gate failed[/]: " + "; ".join(gate["reasons"]))
    out.print(f"report: {path}")


@app.command()
@user_errors
def demo(
    run: Annotated[str | None, typer.Option("--run", help="Name of the demo run.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The whole path offline: built-in data set, a 4-block ViT trained from scratch, pruned at 0.5 (hessian),
    exported to onnxruntime, benchmarked on the held-out sketch domain.

    Example:

      edgeprune demo --workspace /tmp/edgeprune-demo
    """
    from edgeprune.pipeline.demo import run_demo

    ws = _workspace(workspace)
    report = run_demo(ws, run_name=run, reporter=_reporter())
    _print_bench(report, ws.root / report["run"] / "bench" / f"{report['target']}-{report['domain']}.json")
    if not report["gate"]["passed"]:
        raise typer.Exit(EXIT_GATE_FAILED)


@data_app.command("generate")
@user_errors
def data_generate(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write it \\[default: the cache folder].")
    ] = None,
    images_per_class: Annotated[int, typer.Option(help="Images per class and domain.", min=1)] = 80,
    size: Annotated[int, typer.Option(help="Image side in pixels.", min=16)] = 64,
    seed: Annotated[int, typer.Option(help="Generator seed.", min=0)] = 0,
) -> None:
    """Write the built-in PACS-shaped data set (photo, art_painting, cartoon, sketch; 7 classes).

    Example:

      edgeprune data generate --out ./builtin-pacs --images-per-class 80
    """
    from edgeprune.data.builtin import default_builtin_root, generate_builtin

    root = out_dir or default_builtin_root()
    with _reporter().task("generate", None) as advance:
        generate_builtin(
            root, images_per_class=images_per_class, size=size, seed=seed, progress=lambda done, total: advance(1)
        )
    out.print(f"built-in data set: {root}")


@app.command()
def models() -> None:
    """List the model aliases."""
    from edgeprune.models.registry import ALIASES

    table = Table(title="model aliases (any timm model name works too)")
    for column in ("alias", "timm model", "notes"):
        table.add_column(column)
    for spec in ALIASES.values():
        extra = ", ".join(f"{k}={v}" for k, v in spec.create_kwargs.items())
        table.add_row(spec.name, spec.timm_name, spec.description + (f" [{extra}]" if extra else ""))
    out.print(table)


if __name__ == "__main__":
    app()
