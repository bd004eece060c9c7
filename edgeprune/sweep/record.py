"""`<workspace>/sweeps/<name>/sweep.json`: the spec and every cell with its status, typed (pydantic).

Only the sweep's driver writes it (atomically, after every change of a cell), so an interrupt leaves the last
consistent state on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeprune.config import Amount
from edgeprune.errors import EdgepruneError
from edgeprune.sweep.spec import SweepSpec
from edgeprune.workspace import Workspace, atomic_write_json, read_json, utc_now

SWEEPS_DIR = "sweeps"
SWEEP_FILE = "sweep.json"
Status = Literal["pending", "running", "done", "failed"]


class CellRecord(BaseModel):
    """One cell of the grid: its settings, its run (named like the cell) and how it went."""

    model_config = ConfigDict(extra="allow")

    name: str  # also the name of the cell's run in the workspace
    model: str
    metric: str
    amount_kind: str  # "ratio" or "macs" (Amount.kind)
    amount_value: float
    domain: str  # held out
    seed: int
    baseline_from: str | None = None  # the cell whose baseline this one reuses (None: it trains its own)
    status: Status = "pending"
    error: str | None = None
    elapsed_s: float | None = None
    finished: str | None = None

    @property
    def amount(self) -> Amount:
        return Amount(self.amount_kind, self.amount_value)

    @property
    def setting(self) -> tuple[str, str, str, float]:
        """What the cell varies apart from the held-out domain and the seed."""
        return (self.model, self.metric, self.amount_kind, self.amount_value)


class SweepRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    edgeprune_sweep: int = 1
    name: str
    created: str
    updated: str | None = None
    spec: SweepSpec
    cells: list[CellRecord]

    def cell(self, name: str) -> CellRecord:
        for cell in self.cells:
            if cell.name == name:
                return cell
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        found = {status: 0 for status in ("done", "failed", "running", "pending")}
        for cell in self.cells:
            found[cell.status] += 1
        return found


def sweeps_root(workspace: Workspace) -> Path:
    return workspace.root / SWEEPS_DIR


def sweep_dir(workspace: Workspace, name: str) -> Path:
    return sweeps_root(workspace) / name


def sweep_file(workspace: Workspace, name: str) -> Path:
    return sweep_dir(workspace, name) / SWEEP_FILE


def list_sweeps(workspace: Workspace) -> list[str]:
    root = sweeps_root(workspace)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / SWEEP_FILE).is_file())


def read_sweep_file(path: Path) -> SweepRecord:
    try:
        return SweepRecord.model_validate(read_json(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EdgepruneError(f"{path} is not a sweep record ({where}: {first['msg']}): fix or delete it") from None


def read_sweep(workspace: Workspace, name: str) -> SweepRecord:
    path = sweep_file(workspace, name)
    if not path.is_file():
        known = ", ".join(list_sweeps(workspace)) or "none"
        raise EdgepruneError(f"no sweep named '{name}' in workspace {workspace.root} (sweeps there: {known})")
    return read_sweep_file(path)


def write_sweep(workspace: Workspace, record: SweepRecord) -> Path:
    record.updated = utc_now()
    path = sweep_file(workspace, record.name)
    atomic_write_json(path, record.model_dump(mode="json"))
    return path
