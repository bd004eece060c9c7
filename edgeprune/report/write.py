"""`edgeprune report`: rows from the cells' runs, settings and frontiers per target, and the files next to the
sweep: results.csv, results.json, report.md, pareto.png, pareto.json."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.report.aggregate import baseline_settings, pruned_settings
from edgeprune.report.frontier import SELECTION_NOTE, TargetSummary
from edgeprune.report.markdown import markdown_report
from edgeprune.report.plot import plot_pareto
from edgeprune.report.rows import COLUMNS, ResultRow, cell_rows
from edgeprune.report.sources import ReportSource, resolve_source
from edgeprune.workspace import Workspace, atomic_write_json, atomic_write_text

FILES = ("results.csv", "results.json", "report.md", "pareto.png", "pareto.json")


@dataclass
class ReportResult:
    title: str
    out_dir: Path
    rows: list[ResultRow]
    summaries: list[TargetSummary]

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / name for name in FILES]

    def recommendations(self) -> list[str]:
        return [s.recommendation() for s in self.summaries if s.points]

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "selection": SELECTION_NOTE,
            "recommendations": self.recommendations(),
            "rows": [r.to_json() for r in self.rows],
        }


def _budget(target: str, source: ReportSource, rows: list[ResultRow]) -> tuple[str | None, float | None]:
    """The latency budget of the sweep's profile, else of the profile the target's engines were built for."""
    from edgeprune.profiles import load_profile

    name = source.spec.profile if source.spec is not None else None
    name = name or next((r.profile for r in rows if r.target == target and r.profile), None)
    if name is None:
        return None, None
    try:
        return name, load_profile(name).gate.latency_budget_ms
    except EdgepruneError:  # a profile file that has moved since: report without a budget
        return name, None


def _summaries(source: ReportSource, rows: list[ResultRow]) -> list[TargetSummary]:
    points = pruned_settings(rows) + baseline_settings(rows)
    found = []
    for target in source.all_targets:
        profile, budget = _budget(target, source, rows)
        found.append(TargetSummary.build(target, profile, budget, [p for p in points if p.target == target]))
    return found


def _csv(rows: list[ResultRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.to_json().items()})
    return buffer.getvalue()


def build_report(workspace: Workspace, names: list[str], out: Path | None = None) -> ReportResult:
    """Read the cells' runs (typed results only) and write the report's files; returns what was found."""
    source = resolve_source(workspace, names, out)
    rows = [row for cell in source.cells for row in cell_rows(cell, source.targets[cell.name], workspace)]
    summaries = _summaries(source, rows)
    result = ReportResult(source.title, source.out_dir, rows, summaries)
    folder = source.out_dir
    atomic_write_text(folder / "results.csv", _csv(rows))
    atomic_write_json(folder / "results.json", result.to_json())
    atomic_write_text(folder / "report.md", markdown_report(source, rows, summaries))
    batch = {s.target: next((r.batch for r in rows if r.target == s.target and r.batch), None) for s in summaries}
    plot_pareto(summaries, folder / "pareto.png", source.title, batch)
    atomic_write_json(
        folder / "pareto.json",
        {"title": source.title, "selection": SELECTION_NOTE, "targets": [s.to_json() for s in summaries]},
    )
    return result
