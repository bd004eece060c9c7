"""Rich tables for the typed results: what the commands print, and nothing else. Each function prints on the console
it is given (stdout, or stderr when stdout holds a command's JSON result)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from edgeprune.cli.app import say
from edgeprune.results import (
    BenchReport,
    BenchTable,
    BuildRecord,
    LatencyOutcome,
    ParityReport,
    PruneReport,
    StageMetrics,
)
from edgeprune.runs import STAGES, RunSummary

if TYPE_CHECKING:
    from edgeprune.latency.table import LatencyTable

_WIDTHS = ("embed_dim", "heads", "head_dim", "mlp_hidden")


def _table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], right: bool = False, wrap: Sequence[str] = ()
) -> Table:
    """Cells as plain text (never markup). Only the columns named in `wrap` (descriptions) wrap: the others
    (names, numbers) are never wrapped or cut."""
    table = Table(title=escape(title))
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if right and i else "left", no_wrap=column not in wrap)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _accuracy(value: float | None) -> str:
    return "not evaluated" if value is None else f"{value:.4f}"


def _needed_width(console: Console, table: Table) -> int:
    """The narrowest width that shows every no-wrap column whole (and a wrapping one at its longest word): the
    cells, their padding (one space each side) and the vertical rules."""
    width = len(table.columns) + 1
    for column in table.columns:
        sizes = [Measurement.get(console, console.options, cell) for cell in (column.header, *column.cells)]
        width += max(size.maximum if column.no_wrap else size.minimum for size in sizes) + 2
    return width


def print_table(console: Console, table: Table) -> None:
    """The table at the console's width, or wider where its names and numbers need it (rich would cut them)."""
    needed = _needed_width(console, table)
    if needed > console.width:
        table.width = needed
    console.print(table, crop=False)


def print_prune_summary(console: Console, run_name: str, report: PruneReport, metrics: dict[str, StageMetrics]) -> None:
    held_out = metrics["baseline"].held_out_domain
    rows = []
    for stage, m in metrics.items():
        macs, params = (report.macs.before, report.params.before) if stage == "baseline" else (
            report.macs.after, report.params.after)  # fmt: skip
        val, held = (_accuracy(m.source_val_accuracy), _accuracy(m.held_out_accuracy))
        rows.append((stage, f"{macs / 1e6:.2f} M", f"{params / 1e6:.3f} M", val, held))
    title = f"run {run_name}: {report.model}, {report.metric}, {report.ratio:.3f} of the units removed"
    columns = ("stage", "MACs", "params", "source val", f"held-out {held_out}")
    print_table(console, _table(title, columns, rows, right=True))
    blocks = [
        (str(b.index), *(f"{getattr(b.before, k)} -> {getattr(b.after, k)}" for k in _WIDTHS)) for b in report.blocks
    ]
    columns = ("block", "embed", "heads", "head dim", "MLP hidden")
    print_table(console, _table("per-block widths (before -> after)", columns, blocks, right=True))
    if report.latency is not None:
        print_latency_outcome(console, report.latency)


def print_latency_outcome(console: Console, outcome: LatencyOutcome) -> None:
    def ms(value: float | None) -> str:
        return "not measured" if value is None else f"{value:.2f}"

    rows = [
        (
            str(i),
            ms(a.aim_ms),
            ms(a.predicted_ms),
            ms(a.measured_ms),
            "" if a.speedup is None else f"{a.speedup:.2f}x (unpruned {a.unpruned_measured_ms:.2f} ms)",
            "" if a.counts_as_ms is None else f"{a.counts_as_ms:.2f} ({len(a.counted_ms)} readings)",
        )
        for i, a in enumerate(outcome.attempts, 1)
    ]
    title = (
        f"latency on {outcome.target} ({outcome.asked}: goal {outcome.goal_ms:.2f} ms, unpruned "
        f"{outcome.unpruned_ms:.2f} ms; profile {outcome.profile}, batch {outcome.batch})"
    )
    columns = ("attempt", "aimed (ms)", "predicted (ms)", "measured (ms)", "measured speed-up", "counts as (ms)")
    print_table(console, _table(title, columns, rows, right=True))


def print_latency_table(console: Console, table: LatencyTable, path: Path) -> None:
    e, r = table.error, table.reference
    rows = [
        ("measured for", table.describe()),
        ("probes", f"{len(table.probes)} ({e.held_out_points} held back from the fit), {table.seconds:.0f} s"),
        ("fit error, held-back probes", f"median {e.median_pct:.1f}%, max {e.max_pct:.1f}%"),
        ("fit error, fitted probes", f"median {e.fit_median_pct:.1f}%"),
        ("unpruned model", f"measured {r.p50_ms:.2f} ms, fit {r.fitted_ms:.2f} ms (predictions scaled by "
         f"{table.scale:.3f})"),
    ]  # fmt: skip
    print_table(console, _table("latency table", ("", ""), rows, wrap=("",)))
    say(console, f"table: {path}")


def print_export(
    console: Console, run_name: str, parity: ParityReport, build: BuildRecord, bundle_folder: Path | None
) -> None:
    rows = [
        (name, f"{c.max_abs_diff:.2e}", f"{c.top1_agreement:.4f}", str(c.samples), build.location(name))
        for name, c in (("model", parity.model), ("baseline", parity.baseline))
    ]
    columns = ("model", "max |diff|", "top-1 agreement", "images", "engine")
    title = f"run {run_name}: export for {build.target} ({build.profile}), torch vs onnx"
    print_table(console, _table(title, columns, rows))
    for name, what, agreement in build.agreements():
        console.print(
            f"{name}: {what} vs fp32 top-1 agreement {agreement.top1_agreement:.4f} on {agreement.samples} "
            "held-out images"
        )
    if build.note and bundle_folder is not None:
        command = f"edgeprune build {bundle_folder}"
        console.print(f"[yellow]{escape(build.note)}:[/] {escape(command)}", highlight=False, soft_wrap=True)


def print_bench(console: Console, report: BenchReport, path: Path) -> None:
    from edgeprune.bench.report import describe_setting, dominance_warning, part_rows, report_rows

    print_table(console, _table(describe_setting(report), ("", "baseline", "pruned"), report_rows(report), right=True))
    warning = dominance_warning(report)
    if warning:
        say(console, f"warning: {warning}")
    if report.breakdown:
        columns = ("part", "baseline ms", "pruned ms", "speed-up", "MACs ratio", "time / MACs")
        title = f"where the time goes ({report.breakdown.source})"
        print_table(console, _table(title, columns, part_rows(report.breakdown), right=True))
    if report.passed:
        console.print("[bold green]gate passed[/]")
    else:
        console.print("[bold red]gate failed[/]: " + escape("; ".join(report.gate.reasons if report.gate else [])))
    say(console, f"report: {path}")


def print_bench_table(console: Console, table: BenchTable) -> None:
    """Ultralytics' benchmark shape: one row per target, a failed target's row says why."""

    def number(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    rows = [
        (r.target, r.status, number(r.size_mb, ".2f"), number(r.accuracy, ".4f"), number(r.agreement, ".4f"),
         number(r.p50_ms, ".3f"), number(r.p90_ms, ".3f"), number(r.fps, ".1f"),
         "-" if r.speedup is None else f"{r.speedup:.2f}x",
         "-" if r.gate_passed is None else ("passed" if r.gate_passed else "failed"))
        for r in table.rows
    ]  # fmt: skip
    columns = ("target", "status", "size MB", "accuracy", "agreement", "p50 ms", "p90 ms", "FPS", "speed-up", "gate")
    domain = table.domain or "the held-out domain"
    title = f"run {table.run}, {len(table.rows)} targets: accuracy on {domain}; speed-up over the unpruned model"
    print_table(console, _table(title, columns, rows, right=True))
    if table.chance_accuracy is not None:
        say(console, f"chance level on {domain}: {table.chance_accuracy:.4f}")
    for row in table.rows:
        if row.error:
            say(console, f"{row.target} failed: {row.error}")
        if row.dominated:
            say(
                console, f"warning: {row.target}: one class gets most {domain} predictions ({'; '.join(row.dominated)})"
            )


def print_profiles(console: Console, profiles: Iterable[Any]) -> None:
    rows = [
        (p.name, p.default_target, f"{p.batch.min}/{p.batch.opt}/{p.batch.max}", f"{p.gate.latency_budget_ms:g} ms",
         p.description)
        for p in profiles
    ]  # fmt: skip
    columns = ("name", "target", "batch", "budget", "description")
    title = "hardware profiles (target: the default; batch: min/opt/max; budget: latency)"
    print_table(console, _table(title, columns, rows, wrap=("description",)))


def print_models(console: Console, specs: Iterable[Any]) -> None:
    rows = []
    for spec in specs:
        settings = ", ".join(f"{k}={v}" for k, v in spec.create_kwargs.items())
        rows.append((spec.name, spec.timm_name, spec.description + (f" [{settings}]" if settings else "")))
    title = "model aliases (any timm model name works too)"
    print_table(console, _table(title, ("alias", "timm model", "notes"), rows, wrap=("notes",)))


def _run_row(s: RunSummary) -> tuple[str, ...]:
    accuracies = (s.held_out_accuracy.get(stage) for stage in STAGES)
    macs = f"{s.macs.kept:.0%}" if s.macs else ""
    return (s.name, s.status, s.model, s.metric, s.amount, s.held_out_domain, macs,
            *("" if a is None else f"{a:.4f}" for a in accuracies))  # fmt: skip


def print_runs(console: Console, root: Path, summaries: Iterable[RunSummary]) -> None:
    columns = ("run", "status", "model", "metric", "amount", "held out", "MACs", "baseline", "pruned", "tuned")
    title = f"runs in {root} (MACs kept; held-out accuracy after each stage)"
    print_table(console, _table(title, columns, [_run_row(s) for s in summaries]))
