"""report.md in the paper's layout: per model, held-out accuracy per domain and their average (and the change from
the baseline), mean ± std over seeds; then the speed-ups per target; the recommendation on top."""

from __future__ import annotations

from collections.abc import Iterable

from edgeprune.config import Amount
from edgeprune.report.aggregate import (
    MeanStd,
    Setting,
    baseline_rows,
    by_cell,
    group,
    mean,
    mean_std,
    setting_key,
)
from edgeprune.report.frontier import SELECTION_NOTE, TargetSummary
from edgeprune.report.rows import ResultRow
from edgeprune.report.sources import ReportSource


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: MeanStd | None, signed: bool = False) -> str:
    return "n/a" if value is None else value.format(signed=signed)


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _per_domain(rows: list[ResultRow], domains: list[str], field: str, signed: bool = False) -> list[str]:
    """Mean ± std over seeds per held-out domain, then the average over domains (per seed, then over seeds)."""
    cells = [_fmt(mean_std(getattr(r, field) for r in rows if r.held_out_domain == d), signed) for d in domains]
    per_seed = [mean(getattr(r, field) for r in members) for members in group(rows, lambda r: r.seed).values()]
    return cells + [_fmt(mean_std(per_seed), signed)]


def _accuracy_tables(model: str, rows: list[ResultRow], domains: list[str]) -> str:
    cells = [r for r in by_cell(rows) if r.model == model]
    baselines = baseline_rows(cells)
    seeds = len({r.seed for r in cells})
    header = ["metric", "amount", "MACs kept", *domains, "avg"]
    settings = group(cells, setting_key)
    accuracy = [["baseline", "-", "1.000", *_per_domain(baselines, domains, "held_out_baseline")]]
    change = []
    for (_, metric, kind, value), members in settings.items():
        lead = [metric, Amount(kind, value).tag(), _num(mean(r.macs_kept for r in members), ".3f")]
        accuracy.append(lead + _per_domain(members, domains, "held_out_pruned"))
        change.append(lead + _per_domain(members, domains, "held_out_change", signed=True))
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    return "\n\n".join(
        [
            f"### Held-out accuracy (%), pruned and fine-tuned ({spread})",
            _table(header, accuracy),
            "### Change from the baseline (points)",
            _table(header, change),
        ]
    )


def _speed_row(point: Setting, chosen: Setting | None, rows: list[ResultRow]) -> list[str]:
    members = [r for r in rows if r.cell in point.cells and r.target == point.target]
    if point.baseline:
        p90 = mean(r.baseline_latency_p90_ms for r in members)
        engine = mean(r.baseline_engine_accuracy for r in members)
        agreement = mean(r.baseline_engine_agreement for r in members)
    else:
        p90 = mean(r.latency_p90_ms for r in members)
        engine = mean(r.engine_accuracy for r in members)
        agreement = mean(r.engine_agreement for r in members)
    mark = "**deploy**" if point is chosen else ""
    amount = "-" if point.baseline else point.short.split(" ")[1]
    return [
        mark, point.metric or "baseline", amount, f"{point.macs_kept:.3f}", f"{point.p50_ms:.3f}", _num(p90, ".3f"),
        _num(point.speedup, ".2f") + "x", _num(engine, ".4f"), _num(agreement, ".4f"), _num(point.source_val, ".4f"),
        "-" if point.baseline else f"{sum(bool(r.gate_passed) for r in members)}/{len(members)}",
        f"{len(point.cells)}/{point.expected_cells}",
    ]  # fmt: skip


def _speed_tables(model: str, rows: list[ResultRow], summaries: list[TargetSummary]) -> str:
    parts = []
    header = ["", "metric", "amount", "MACs kept", "p50 ms", "p90 ms", "speed-up", "engine acc", "agreement",
              "source val", "gate passed", "cells"]  # fmt: skip
    for summary in summaries:
        points = sorted((p for p in summary.points if p.model == model), key=lambda p: not p.baseline)
        if not points:
            continue
        batch = next((r.batch for r in rows if r.target == summary.target and r.batch), None)
        budget = "" if summary.budget_ms is None else f", budget {summary.budget_ms:g} ms ({summary.profile})"
        parts.append(f"### Speed-up on {summary.target} (batch {batch}{budget}; engine accuracy on held-out domains)")
        parts.append(_table(header, (_speed_row(p, summary.recommended, rows) for p in points)))
    return "\n\n".join(parts)


def _header(source: ReportSource, summaries: list[TargetSummary]) -> str:
    lines = [f"# {source.title[0].upper()}{source.title[1:]}", ""]
    spec = source.spec
    if spec is not None:
        amounts = ", ".join(a.tag() for a in spec.amounts())
        domains = ", ".join(dict.fromkeys(c.domain for c in source.cells))
        steps = f" (at most {spec.max_steps_per_epoch} steps each)" if spec.max_steps_per_epoch else ""
        lines.append(
            f"Models {', '.join(spec.models)}; metrics {', '.join(spec.metrics)}; amounts {amounts}; held out "
            f"{domains}, each in turn; seeds {', '.join(map(str, spec.seeds))}; targets {', '.join(spec.targets)}; "
            f"baseline epochs {_auto(spec.baseline_epochs)}, epochs {spec.epochs}{steps}; "
            f"data {spec.data or 'built-in'}."
        )
    lines += ["", "## Recommendation", ""]
    lines += [f"- **{s.recommendation()}**" for s in summaries] or ["- nothing measured yet"]
    lines += ["", f"> {SELECTION_NOTE}", "", "![held-out accuracy against p50 latency](pareto.png)"]
    return "\n".join(lines)


def _cells_section(source: ReportSource) -> str:
    counts = {s: sum(c.status == s for c in source.cells) for s in ("done", "failed", "running", "pending")}
    text = "## Cells\n\n" + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(source.cells)}."
    failed = [c for c in source.cells if c.status == "failed"]
    if failed:
        text += "\n\n" + _table(["failed cell", "error"], ([c.name, (c.error or "").replace("|", "/")] for c in failed))
    return text


def markdown_report(source: ReportSource, rows: list[ResultRow], summaries: list[TargetSummary]) -> str:
    domains = list(dict.fromkeys(c.domain for c in source.cells))
    models = list(dict.fromkeys(c.model for c in source.cells))
    parts = [_header(source, summaries)]
    for model in models:
        if not any(r.model == model and r.status == "done" for r in rows):
            continue
        parts += [f"## {model}", _accuracy_tables(model, rows, domains), _speed_tables(model, rows, summaries)]
    parts.append(_cells_section(source))
    return "\n\n".join(p for p in parts if p) + "\n"


def _auto(value: int | None) -> str:
    return "auto" if value is None else str(value)
