"""What a report covers: a sweep (by name or folder), or runs named one by one, as cells with their targets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edgeprune.errors import EdgepruneError
from edgeprune.sweep.record import (
    SWEEP_FILE,
    CellRecord,
    list_sweeps,
    read_sweep,
    read_sweep_file,
    sweep_dir,
    sweeps_root,
)
from edgeprune.sweep.spec import SweepSpec
from edgeprune.workspace import Workspace


@dataclass
class ReportSource:
    title: str
    out_dir: Path
    cells: list[CellRecord]
    targets: dict[str, list[str]]  # per cell, the targets it has (or should have) bench reports for
    spec: SweepSpec | None = None  # for a sweep

    @property
    def all_targets(self) -> list[str]:
        return list(dict.fromkeys(t for targets in self.targets.values() for t in targets))


def _sweep(workspace: Workspace, name_or_path: str) -> ReportSource:
    path = Path(name_or_path)
    if (path / SWEEP_FILE).is_file():
        record = read_sweep_file(path / SWEEP_FILE)
        folder = path
    else:
        record = read_sweep(workspace, name_or_path)
        folder = sweep_dir(workspace, record.name)
    targets = {cell.name: list(record.spec.targets) for cell in record.cells}
    return ReportSource(f"sweep {record.name}", folder, record.cells, targets, record.spec)


def _run_cell(workspace: Workspace, name: str) -> tuple[CellRecord, list[str]]:
    from edgeprune.requests import PruneRequest

    run = workspace.get_run(name)
    manifest = run.manifest()
    request = PruneRequest.from_json(manifest["request"])
    amount = request.amount()
    complete = manifest.get("status") == "complete"
    targets = [b.target for b in run.bench_reports() if b.domain == request.target_domain] if complete else []
    cell = CellRecord(
        name=run.name, model=request.model, metric=request.metric, amount_kind=amount.kind,
        amount_value=amount.value, domain=request.target_domain, seed=request.seed,
        status="done" if complete else "failed", error=None if complete else "the run is incomplete",
        baseline_from=manifest.get("stages", {}).get("baseline", {}).get("reused_from"),
    )  # fmt: skip
    return cell, targets


def _runs(workspace: Workspace, names: list[str], out: Path | None) -> ReportSource:
    cells, targets = [], {}
    for name in names:
        cell, found = _run_cell(workspace, name)
        cells.append(cell)
        targets[cell.name] = found
    folder = out or workspace.root / "reports" / datetime.now().strftime("runs-%Y%m%d-%H%M%S")
    return ReportSource(f"runs {', '.join(names)}", folder, cells, targets)


def _latest_sweep(workspace: Workspace) -> str:
    names = list_sweeps(workspace)
    if not names:
        raise EdgepruneError(
            f"no sweep in workspace {workspace.root}: run `edgeprune sweep` first, or name runs to report on"
        )
    return max(names, key=lambda n: (sweeps_root(workspace) / n / SWEEP_FILE).stat().st_mtime)


def resolve_source(workspace: Workspace, names: list[str], out: Path | None = None) -> ReportSource:
    """No names: the latest sweep. One name of a sweep (or a sweep's folder): that sweep. Otherwise: runs."""
    if not names:
        names = [_latest_sweep(workspace)]
    if len(names) == 1 and (names[0] in list_sweeps(workspace) or (Path(names[0]) / SWEEP_FILE).is_file()):
        source = _sweep(workspace, names[0])
        if out is not None:
            source.out_dir = out
        return source
    known = set(workspace.list_runs())
    unknown = [n for n in names if n not in known]
    if unknown:
        sweeps = ", ".join(list_sweeps(workspace)) or "none"
        raise EdgepruneError(
            f"{', '.join(unknown)}: neither a sweep nor a run in workspace {workspace.root} (sweeps there: {sweeps}; "
            "`edgeprune report` takes one sweep name or folder, or run names)"
        )
    return _runs(workspace, names, out)
