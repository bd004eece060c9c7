"""Where cells run. An executor takes cells and the function that runs one, and hands back each outcome as it
finishes; the driver (edgeprune.sweep.runner) alone records them. `LocalExecutor` runs cells one after another in
this process; `RayExecutor` (ray_executor.py, `edgeprune sweep --executor ray`) submits `fn.detached()` (a picklable
CellTask) as a Ray task per cell, calls `on_start` as it submits each, and yields outcomes as `ray.wait` returns them.
An executor is one class and one entry in EXECUTORS; its options (such as Ray's address) are its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from edgeprune.sweep.cell import CellOutcome, CellTask
from edgeprune.sweep.ray_executor import RayExecutor  # imports Ray only when one is made
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


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": RayExecutor}
