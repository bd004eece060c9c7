"""Sweeps: a grid of ordinary runs (models x metrics x amounts x held-out domains x seeds), each exported and
benchmarked on every target, recorded in `<workspace>/sweeps/<name>/sweep.json` and resumable.

spec.py (what is asked, from TOML and flags), plan.py (cells and their requests), record.py (sweep.json, typed),
cell.py (one cell: prune, export, bench), executor.py (where cells run; ray_executor.py: as Ray tasks), runner.py
(the driver).
"""

from edgeprune.sweep.record import CellRecord, SweepRecord, list_sweeps, read_sweep, sweep_dir
from edgeprune.sweep.spec import SweepSpec, load_spec

__all__ = ["CellRecord", "SweepRecord", "SweepSpec", "list_sweeps", "load_spec", "read_sweep", "sweep_dir"]
