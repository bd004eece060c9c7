"""Cells as Ray tasks: `edgeprune sweep --executor ray [--address auto|HOST:PORT] [--cpus-per-cell N]`.

Each cell is one Ray task that runs the sweep's detached CellTask and returns its CellOutcome; the driver (this
process, runner.py) records outcomes in sweep.json as `ray.wait` hands them back, exactly as for the local executor.
The driver gives the cells in two waves (the cells that train a group's baseline, then the cells that reuse it), so a
follower never starts before its leader is finished; within a wave every cell is submitted at once and Ray runs as
many as the cluster's resources allow.

Cells write their runs into the workspace and the driver reads them back, so on a cluster the workspace must be on a
path every node sees (a shared file system mounted at the same path everywhere), and so must --data; edgeprune must
be installed on every node. Without --address a local Ray is started (or the one $RAY_ADDRESS names, as Ray does).

Resources per cell: `cpus_per_cell` CPUs (Ray sets OMP_NUM_THREADS to match) and one GPU when the cluster has GPUs
(on a local Ray: CUDA devices of this machine), else none. A task is not retried: a worker that dies (out of
memory, a lost node) fails its cell, and `--retry-failed` resumes it from its run's finished stages.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgeprune.errors import EdgepruneError
from edgeprune.sweep.cell import CellOutcome, CellTask
from edgeprune.sweep.record import CellRecord
from edgeprune.workspace import Workspace

if TYPE_CHECKING:
    from edgeprune.sweep.executor import CellFn, OnStart

MISSING_RAY = "--executor ray needs Ray: pip install 'edgeprune[ray]'"
_FORWARDED_ENV = ("EDGEPRUNE_", "HF_HUB_OFFLINE", "HF_HOME")  # the driver's settings that cells should see too


def import_ray() -> ModuleType:
    """Ray, an optional extra, imported only when it is asked for."""
    try:
        import ray
    except ImportError:
        raise EdgepruneError(MISSING_RAY) from None
    return ray


def check_address(address: str) -> None:
    """`auto` (or `local`), or HOST:PORT that something listens on: Ray itself retries an address nothing answers
    at for many minutes, deaf to Ctrl-C, so it is tried here first."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise EdgepruneError(f"--address takes auto or HOST:PORT (got {address!r})")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise EdgepruneError(f"cannot reach a Ray cluster at --address {address}: {exc}") from None


def _run_cell_task(task: CellTask, cell: CellRecord) -> CellOutcome:
    """The body of a cell's Ray task (module level, so that workers import it rather than unpickle code)."""
    return task(cell)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class RayExecutor:
    """Every cell of a wave at once, as Ray tasks on a local Ray or on the cluster at `address`."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1.0):
        if cpus_per_cell <= 0:
            raise EdgepruneError(f"--cpus-per-cell must be above 0 (got {cpus_per_cell:g})")
        self.ray = import_ray()  # fails here, before any planning, when Ray is missing
        if address is not None:
            check_address(address)
        self.address, self.cpus_per_cell = address, cpus_per_cell

    def _connect(self) -> dict[str, float]:
        """Start or join Ray once per process; the cluster's resources."""
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False)
            except ConnectionError as exc:
                raise EdgepruneError(f"cannot reach a Ray cluster at --address {self.address}: {exc}") from None
        resources = ray.cluster_resources()
        if self.address is None and resources.get("CPU", 0) < self.cpus_per_cell:
            raise EdgepruneError(
                f"--cpus-per-cell {self.cpus_per_cell:g} is more than the local Ray's {resources.get('CPU', 0):g} "
                "CPUs: no cell could ever start"
            )
        return resources

    def _remote(self, resources: dict[str, float]) -> Any:
        """The cell's remote function with its resource request."""
        env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV)}
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        options: dict[str, Any] = {"num_cpus": self.cpus_per_cell, "num_gpus": gpus, "max_retries": 0}
        if env:
            options["runtime_env"] = {"env_vars": env}
        return self.ray.remote(**options)(_run_cell_task)

    def run(self, cells: Sequence[CellRecord], fn: CellFn, on_start: OnStart | None = None) -> Iterator[CellOutcome]:
        if not cells:
            return
        ray = self.ray
        remote = self._remote(self._connect())
        # A path that means the same on every node: a worker's current folder is not the driver's.
        task = ray.put(replace(fn.detached(), workspace=Workspace(fn.workspace.root.resolve())))
        pending: dict[Any, tuple[CellRecord, float]] = {}
        try:
            for cell in cells:
                if on_start is not None:
                    on_start(cell)
                pending[remote.options(name=cell.name).remote(task, cell)] = (cell, time.perf_counter())
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell, submitted = pending.pop(ready[0])
                yield self._outcome(ready[0], cell, submitted)
        finally:  # interrupted: stop the cells still running, so that none writes while a later sweep resumes them
            for ref in pending:
                ray.cancel(ref, force=True)

    def _outcome(self, ref: Any, cell: CellRecord, submitted: float) -> CellOutcome:
        """The task's CellOutcome; a task that Ray could not finish (its worker died, ...) is the cell's failure."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            error = _one_line(f"Ray: {type(exc).__name__}: {exc}")[:500]
            return CellOutcome(cell.name, "failed", time.perf_counter() - submitted, error, str(exc))
