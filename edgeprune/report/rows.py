"""One tidy row per cell and target, read only through the typed results that `Run` hands out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.sweep.record import CellRecord
from edgeprune.workspace import Workspace


@dataclass
class ResultRow:
    cell: str  # the cell's run
    status: str
    model: str
    metric: str
    amount_kind: str
    amount_value: float
    held_out_domain: str
    seed: int
    target: str | None = None
    baseline_run: str | None = None  # the run whose baseline stage this cell's baseline is
    error: str | None = None
    macs_kept: float | None = None
    params_kept: float | None = None
    units_removed: float | None = None
    held_out_baseline: float | None = None  # torch, unpruned baseline
    held_out_right_after_pruning: float | None = None
    held_out_pruned: float | None = None  # torch, pruned and fine-tuned: the model that is exported
    held_out_change: float | None = None  # pruned - baseline
    source_val_baseline: float | None = None
    source_val_pruned: float | None = None  # what model selection uses
    engine_accuracy: float | None = None  # held-out, the target's engine
    engine_agreement: float | None = None  # top-1, engine vs torch
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    throughput_ips: float | None = None
    baseline_latency_p50_ms: float | None = None
    baseline_latency_p90_ms: float | None = None
    baseline_engine_accuracy: float | None = None
    baseline_engine_agreement: float | None = None
    speedup: float | None = None  # baseline p50 / pruned p50 on the same target
    batch: int | None = None
    profile: str | None = None  # the bench's profile, else the engine's
    gate_passed: bool | None = None
    elapsed_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def measured(self) -> bool:
        return self.status == "done" and self.latency_p50_ms is not None


COLUMNS = [f.name for f in fields(ResultRow)]


def _accuracies(run: Any) -> dict[str, Any]:
    report = run.prune_report()
    baseline, pruned, finetuned = (run.metrics(s) for s in ("baseline", "pruned", "finetuned"))
    return {
        "macs_kept": report.achieved.macs_kept,
        "params_kept": report.achieved.params_kept,
        "units_removed": report.achieved.units_removed,
        "held_out_baseline": baseline.held_out_accuracy,
        "held_out_right_after_pruning": pruned.held_out_accuracy,
        "held_out_pruned": finetuned.held_out_accuracy,
        "held_out_change": None
        if finetuned.held_out_accuracy is None or baseline.held_out_accuracy is None
        else finetuned.held_out_accuracy - baseline.held_out_accuracy,
        "source_val_baseline": baseline.source_val_accuracy,
        "source_val_pruned": finetuned.source_val_accuracy,
    }


def _bench(run: Any, target: str | None, domain: str) -> dict[str, Any]:
    if target is None or not run.bench_path(target, domain).exists():
        return {}
    bench = run.bench_report(target, domain)
    return {
        "engine_accuracy": bench.accuracy.get("engine"),
        "engine_agreement": bench.agreement,
        "latency_p50_ms": bench.latency_ms["p50"],
        "latency_p90_ms": bench.latency_ms["p90"],
        "throughput_ips": bench.throughput_ips,
        "baseline_latency_p50_ms": bench.baseline_latency_ms["p50"],
        "baseline_latency_p90_ms": bench.baseline_latency_ms["p90"],
        "baseline_engine_accuracy": bench.accuracy.get("baseline_engine"),
        "baseline_engine_agreement": bench.baseline_agreement,
        "speedup": bench.speedup,
        "batch": bench.batch,
        "profile": bench.profile or bench.engine_profile,
        "gate_passed": bench.passed,
    }


def cell_rows(cell: CellRecord, targets: list[str], workspace: Workspace) -> list[ResultRow]:
    """The cell's rows, one per target (one without a target if it has none); a cell not done gets rows with its
    status and error only."""
    wanted: list[str | None] = list(targets) or [None]
    common = dict(
        cell=cell.name, status=cell.status, model=cell.model, metric=cell.metric, amount_kind=cell.amount_kind,
        amount_value=cell.amount_value, held_out_domain=cell.domain, seed=cell.seed, error=cell.error,
        elapsed_s=cell.elapsed_s,
    )  # fmt: skip
    if cell.status != "done":
        return [ResultRow(**common, target=target) for target in wanted]
    common["baseline_run"] = cell.baseline_from or cell.name
    try:
        run = workspace.get_run(cell.name)
        accuracies = _accuracies(run)
        return [
            ResultRow(**common, target=target, **accuracies, **_bench(run, target, cell.domain)) for target in wanted
        ]
    except EdgepruneError as exc:
        raise EdgepruneError(
            f"cell {cell.name} is recorded as done but its run cannot be read ({exc}): run the sweep again, "
            "which redoes the cells whose runs are missing"
        ) from None
