"""One cell: an ordinary run made with the library calls the CLI uses (prune or resume, then export and bench for
every target). Whatever state the run was left in, calling `run_cell` again finishes only what is missing."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.requests import BenchRequest, ExportRequest
from edgeprune.sweep.plan import prune_request
from edgeprune.sweep.record import CellRecord
from edgeprune.sweep.spec import SweepSpec
from edgeprune.workspace import MANIFEST_FILE, Run, Workspace


@dataclass
class CellOutcome:
    """What the driver records for a cell: picklable, so that a remote executor can send it back."""

    name: str
    status: str  # "done" or "failed"
    elapsed_s: float
    error: str | None = None  # one line
    details: str | None = None  # the traceback of an unexpected error
    baseline_from: str | None = None  # the run whose baseline was reused, if any


def _baseline_source(cell: CellRecord, workspace: Workspace) -> str | None:
    """The group leader's run when it has a finished baseline; otherwise the cell trains its own."""
    if cell.baseline_from is None:
        return None
    leader = workspace.root / cell.baseline_from
    if (leader / MANIFEST_FILE).exists() and Run(leader).has_stage("baseline"):
        return cell.baseline_from
    return None


def cell_complete(cell: CellRecord, spec: SweepSpec, workspace: Workspace) -> bool:
    """The cell's run exists and holds a bench report for every target (checked without reading it)."""
    path = workspace.root / cell.name
    return (path / MANIFEST_FILE).exists() and all(Run(path).bench_path(t, cell.domain).exists() for t in spec.targets)


def _pruned_run(cell: CellRecord, spec: SweepSpec, workspace: Workspace, reporter: Reporter) -> Run:
    from edgeprune.pipeline.prune import resume_prune, run_prune

    path = workspace.run_dir(cell.name)
    if (path / MANIFEST_FILE).exists():
        run = Run(path)
        if run.manifest().get("status") == "complete":
            return run
        return resume_prune(workspace, cell.name, reporter)
    if path.exists() and not any(path.iterdir()):  # interrupted between creating the folder and its run.json
        path.rmdir()
    request = prune_request(spec, cell, baseline_run=_baseline_source(cell, workspace))
    return run_prune(request, workspace, run_name=cell.name, reporter=reporter)


def _measured(run: Run, spec: SweepSpec, cell: CellRecord, reporter: Reporter) -> None:
    """Export and bench each target whose bench report on the held-out domain is not there yet."""
    from edgeprune.pipeline.bench import run_bench
    from edgeprune.pipeline.export import run_export

    workspace = Workspace(run.dir.parent)
    for target in spec.targets:
        if run.bench_path(target, cell.domain).exists():
            continue
        run_export(workspace, ExportRequest(target=target, profile=spec.profile), run.name, reporter)
        run_bench(workspace, BenchRequest(target=target, profile=spec.profile), run.name, reporter)


def run_cell(cell: CellRecord, spec: SweepSpec, workspace: Workspace, reporter: Reporter | None = None) -> CellOutcome:
    """Run (or finish) one cell. Errors are caught and returned: a failing cell does not stop the others.
    An interrupt (KeyboardInterrupt) is not caught: the run keeps its finished stages and is resumed next time."""
    reporter = reporter or Reporter()
    start = time.perf_counter()
    try:
        run = _pruned_run(cell, spec, workspace, reporter)
        _measured(run, spec, cell, reporter)
    except EdgepruneError as exc:
        return CellOutcome(cell.name, "failed", time.perf_counter() - start, _one_line(str(exc)))
    except Exception as exc:  # noqa: BLE001  (any bug or library error in one cell is that cell's failure)
        error = _one_line(f"{type(exc).__name__}: {exc}")
        return CellOutcome(cell.name, "failed", time.perf_counter() - start, error, traceback.format_exc())
    reused = run.manifest()["stages"].get("baseline", {}).get("reused_from")
    return CellOutcome(cell.name, "done", time.perf_counter() - start, baseline_from=reused)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass
class CellTask:
    """`run_cell` bound to one sweep: what an executor calls per cell. `detached()` leaves the in-process reporter
    behind (a progress bar does not travel), for an executor that ships the task to other processes."""

    spec: SweepSpec
    workspace: Workspace
    reporter: Reporter | None = None

    def __call__(self, cell: CellRecord) -> CellOutcome:
        return run_cell(cell, self.spec, self.workspace, self.reporter)

    def detached(self) -> CellTask:
        return CellTask(self.spec, self.workspace)
