"""Where cells run. An executor takes cells and the function that runs one, and hands back each outcome as it
finishes; the driver (edgeprune.sweep.runner) alone records them. `LocalExecutor` runs cells one after another in
this process; a Ray executor would submit `fn.detached()` (a picklable CellTask) as a remote task per cell, call
`on_start` as it submits each, and yield outcomes as `ray.wait` returns them. It is one more class and one more
entry in EXECUTORS (then `edgeprune sweep --executor ray`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from edgeprune.sweep.cell import CellOutcome, CellTask
from edgeprune.sweep.record import CellRecord

CellFn = CellTask  # called with a cell; picklable once detached
OnStart = Callable[[CellRecord], None]


class Executor(Protocol):
    name: str

    def run(self, cells: Sequence[CellRecord], fn: CellFn, on_start: OnStart | None = None) -> Iterator[CellOutcome]:
        """Run `fn` on every cell; yield each outcome when it is ready (any order). An interrupt propagates."""
        ...


class LocalExecutor:
    """One cell at a time, in order, in this process."""

    name = "local"

    def run(self, cells: Sequence[CellRecord], fn: CellFn, on_start: OnStart | None = None) -> Iterator[CellOutcome]:
        for cell in cells:
            if on_start is not None:
                on_start(cell)
            yield fn(cell)


EXECUTORS: dict[str, Callable[[], Executor]] = {"local": LocalExecutor}
