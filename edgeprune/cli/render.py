"""Rich tables for the typed results: what the commands print, and nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.table import Table

from edgeprune.cli.app import out
from edgeprune.results import BenchReport, BuildRecord, ParityReport, PruneReport, StageMetrics

_WIDTHS = ("embed_dim", "heads", "head_dim", "mlp_hidden")


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]], right: bool = False) -> Table:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if right and i else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _accuracy(value: float | None) -> str:
    return "not evaluated" if value is None else f"{value:.4f}"


def print_prune_summary(run_name: str, report: PruneReport, metrics: dict[str, StageMetrics]) -> None:
    held_out = metrics["baseline"].held_out_domain
    rows = []
    for stage, m in metrics.items():
        macs, params = (report.macs.before, report.params.before) if stage == "baseline" else (
            report.macs.after, report.params.after)  # fmt: skip
        val, held = (_accuracy(m.source_val_accuracy), _accuracy(m.held_out_accuracy))
        rows.append((stage, f"{macs / 1e6:.2f} M", f"{params / 1e6:.3f} M", val, held))
    title = f"run {run_name}: {report.model}, {report.metric}, {report.ratio:.3f} of the units removed"
    out.print(_table(title, ("stage", "MACs", "params", "source val acc", f"held-out {held_out}"), rows, right=True))
    blocks = [
        (str(b.index), *(f"{getattr(b.before, k)} -> {getattr(b.after, k)}" for k in _WIDTHS)) for b in report.blocks
    ]
    columns = ("block", "embed", "heads", "head dim", "MLP hidden")
    out.print(_table("per-block widths (before -> after)", columns, blocks, right=True))


def print_export(run_name: str, parity: ParityReport, build: BuildRecord, bundle_folder: Path | None) -> None:
    rows = [
        (name, f"{c.max_abs_diff:.2e}", f"{c.top1_agreement:.4f}", str(c.samples), build.location(name))
        for name, c in (("model", parity.model), ("baseline", parity.baseline))
    ]
    columns = ("model", "max |torch - onnx|", "top-1 agreement", "images", "engine")
    out.print(_table(f"run {run_name}: export for {build.target} ({build.profile})", columns, rows))
    for name, what, agreement in build.agreements():
        out.print(
            f"{name}: {what} vs fp32 top-1 agreement {agreement.top1_agreement:.4f} on {agreement.samples} "
            "held-out images"
        )
    if build.note and bundle_folder is not None:
        out.print(f"[yellow]{build.note}: edgeprune build {bundle_folder}")


def print_bench(report: BenchReport, path: Path) -> None:
    from edgeprune.bench.report import describe_setting, report_rows

    out.print(_table(describe_setting(report), ("", "baseline", "pruned"), report_rows(report), right=True))
    if report.passed:
        out.print("[bold green]gate passed[/]")
    else:
        out.print("[bold red]gate failed[/]: " + "; ".join(report.gate.reasons if report.gate else []))
    out.print(f"report: {path}")


def print_profiles(profiles: Iterable[Any]) -> None:
    rows = [
        (p.name, p.default_target, f"{p.batch.min}/{p.batch.opt}/{p.batch.max}", f"{p.gate.latency_budget_ms} ms",
         p.description)
        for p in profiles
    ]  # fmt: skip
    columns = ("name", "default target", "batch min/opt/max", "latency budget", "description")
    out.print(_table("hardware profiles", columns, rows))


def print_models(specs: Iterable[Any]) -> None:
    rows = []
    for spec in specs:
        extra = ", ".join(f"{k}={v}" for k, v in spec.create_kwargs.items())
        rows.append((spec.name, spec.timm_name, spec.description + (f" [{extra}]" if extra else "")))
    out.print(_table("model aliases (any timm model name works too)", ("alias", "timm model", "notes"), rows))
