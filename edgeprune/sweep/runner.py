"""The sweep's driver: plan the cells, continue a sweep of the same name, hand the cells to an executor in two
waves (the cells that train a group's baseline first, then the cells that reuse it), and record every outcome in
sweep.json as it comes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType

from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.sweep.cell import CellOutcome, CellTask, cell_complete
from edgeprune.sweep.executor import Executor, LocalExecutor
from edgeprune.sweep.plan import check_plan, data_domains, held_out_domains, plan_cells
from edgeprune.sweep.record import (
    CellRecord,
    SweepRecord,
    list_sweeps,
    read_sweep,
    sweep_dir,
    write_sweep,
)
from edgeprune.sweep.spec import SweepSpec
from edgeprune.workspace import Workspace, atomic_write_text, utc_now


class SweepListener:
    """Silent base: the driver calls these; the CLI shows a progress bar and one line per cell."""

    def planned(self, record: SweepRecord, todo: Sequence[CellRecord]) -> None:
        pass

    def started(self, cell: CellRecord) -> None:
        pass

    def finished(self, cell: CellRecord) -> None:
        pass

    def cell_reporter(self) -> Reporter:
        """What the pipeline reports to while a cell runs."""
        return Reporter()


def _differences(old: SweepSpec, new: SweepSpec) -> list[str]:
    before, after = old.identity(), new.identity()
    return [f"{key}: {before.get(key)} -> {after.get(key)}" for key in after if before.get(key) != after.get(key)]


def prepare_sweep(spec: SweepSpec, workspace: Workspace, reporter: Reporter) -> SweepRecord:
    """The sweep's record: a new one, or the existing one of that name when its settings are the same."""
    assert spec.name is not None
    if spec.name not in list_sweeps(workspace):
        cells = plan_cells(spec, held_out_domains(spec, data_domains(spec, reporter)))
        return SweepRecord(name=spec.name, created=utc_now(), spec=spec, cells=cells)
    record = read_sweep(workspace, spec.name)
    changed = _differences(record.spec, spec)
    if changed:
        raise EdgepruneError(
            f"sweep '{spec.name}' exists with other settings ({'; '.join(changed)}): give another --name to start a "
            "new sweep, or the same settings to continue this one"
        )
    record.spec = spec  # the same identity; options outside it (data-loading workers) may change
    for cell in record.cells:  # a done cell whose run or bench reports were deleted since is done again
        if cell.status == "done" and not cell_complete(cell, spec, workspace):
            cell.status = "pending"
    return record


def cells_to_run(record: SweepRecord, retry_failed: bool) -> list[CellRecord]:
    """Pending cells, cells left running by an interrupt or a crash, and failed ones when asked to retry."""
    wanted = {"pending", "running"} | ({"failed"} if retry_failed else set())
    return [cell for cell in record.cells if cell.status in wanted]


def _record(record: SweepRecord, outcome: CellOutcome, workspace: Workspace) -> CellRecord:
    cell = record.cell(outcome.name)
    cell.status = "done" if outcome.status == "done" else "failed"
    cell.error = outcome.error
    cell.elapsed_s = round(outcome.elapsed_s, 1)
    cell.finished = utc_now()
    if outcome.status == "done":
        cell.baseline_from = outcome.baseline_from  # the run actually reused (None if the cell trained its own)
    if outcome.details:
        atomic_write_text(sweep_dir(workspace, record.name) / "logs" / f"{cell.name}.log", outcome.details)
    write_sweep(workspace, record)
    return cell


class InterruptWatch:
    """Notes a SIGINT, then raises KeyboardInterrupt as Python does. A cell can fail *because* of the interrupt
    (its data-loading workers get the same signal and die, and the loader raises RuntimeError), or the interrupt can
    be swallowed inside a library: with the note, the driver leaves that cell to resume and stops."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: object = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        signal.default_int_handler(signum, frame)

    def __enter__(self) -> InterruptWatch:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind: type | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]


def run_sweep(
    spec: SweepSpec,
    workspace: Workspace,
    *,
    executor: Executor | None = None,
    listener: SweepListener | None = None,
    retry_failed: bool = False,
) -> SweepRecord:
    """Run every cell not done yet; a failing cell is recorded and the others go on. Returns the final record."""
    executor = executor or LocalExecutor()
    listener = listener or SweepListener()
    reporter = listener.cell_reporter()
    record = prepare_sweep(spec, workspace, reporter)
    todo = cells_to_run(record, retry_failed)
    if todo:
        check_plan(record.spec, todo)
    write_sweep(workspace, record)
    listener.planned(record, todo)
    fn = CellTask(record.spec, workspace, reporter)

    def started(cell: CellRecord) -> None:
        record.cell(cell.name).status = "running"
        write_sweep(workspace, record)
        listener.started(cell)

    leaders = [cell for cell in todo if cell.baseline_from is None]
    followers = [cell for cell in todo if cell.baseline_from is not None]
    try:
        with InterruptWatch() as interrupt:
            for wave in (leaders, followers):
                for outcome in executor.run(wave, fn, started):
                    if interrupt.seen and outcome.status == "failed":
                        raise KeyboardInterrupt  # failed because of the interrupt: resumed next time, not failed
                    listener.finished(_record(record, outcome, workspace))
                    if interrupt.seen:
                        raise KeyboardInterrupt
    finally:  # interrupted: a cell left running is resumed from its run's finished stages next time
        for cell in record.cells:
            if cell.status == "running":
                cell.status = "pending"
        write_sweep(workspace, record)
    return record
