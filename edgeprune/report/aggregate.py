"""From rows to settings: a setting is (model, metric, amount) on one target, averaged over its held-out domains
and seeds; each model's unpruned baseline is a setting too (it can be the right thing to deploy)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.config import Amount
from edgeprune.report.rows import ResultRow


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float | None  # sample standard deviation; None for a single value
    n: int

    def format(self, scale: float = 100.0, digits: int = 2, signed: bool = False) -> str:
        sign = "+" if signed else ""
        text = f"{self.mean * scale:{sign}.{digits}f}"
        return text if self.std is None else f"{text} ± {self.std * scale:.{digits}f}"


def mean_std(values: Iterable[float | None]) -> MeanStd | None:
    found = [v for v in values if v is not None and not math.isnan(v)]
    if not found:
        return None
    return MeanStd(statistics.fmean(found), statistics.stdev(found) if len(found) > 1 else None, len(found))


def mean(values: Iterable[float | None]) -> float | None:
    found = mean_std(values)
    return None if found is None else found.mean


@dataclass
class Setting:
    """One point of the Pareto plot: a pruning setting, or a model's unpruned baseline, on one target."""

    target: str
    model: str
    metric: str | None  # None: the baseline
    amount_kind: str | None
    amount_value: float | None
    held_out: float  # mean over held-out domains (and seeds)
    held_out_change: float | None
    source_val: float | None  # what selection uses
    p50_ms: float
    speedup: float | None
    macs_kept: float
    cells: list[str] = field(default_factory=list)
    expected_cells: int = 0

    @property
    def baseline(self) -> bool:
        return self.metric is None

    @property
    def short(self) -> str:
        if self.metric is None:
            return "baseline"
        assert self.amount_kind is not None and self.amount_value is not None
        return f"{self.metric} {Amount(self.amount_kind, self.amount_value).tag()}"

    @property
    def label(self) -> str:
        return f"{self.model} {self.short}"

    @property
    def complete(self) -> bool:
        return len(self.cells) >= self.expected_cells

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label, "baseline": self.baseline, "complete": self.complete}


def group(rows: Iterable[ResultRow], key: Callable[[ResultRow], Any]) -> dict[Any, list[ResultRow]]:
    found: dict[Any, list[ResultRow]] = defaultdict(list)
    for row in rows:
        found[key(row)].append(row)
    return dict(found)


def setting_key(row: ResultRow) -> tuple[str, str, str, float]:
    return (row.model, row.metric, row.amount_kind, row.amount_value)


def pruned_settings(rows: list[ResultRow]) -> list[Setting]:
    """Every (target, model, metric, amount) with at least one measured cell."""
    expected = {k: len(v) for k, v in group(rows, lambda r: (r.target, *setting_key(r))).items()}
    found = []
    for (target, model, metric, kind, value), members in group(
        [r for r in rows if r.measured], lambda r: (r.target, *setting_key(r))
    ).items():
        found.append(
            Setting(
                target=target, model=model, metric=metric, amount_kind=kind, amount_value=value,
                held_out=mean(r.held_out_pruned for r in members) or 0.0,
                held_out_change=mean(r.held_out_change for r in members),
                source_val=mean(r.source_val_pruned for r in members),
                p50_ms=mean(r.latency_p50_ms for r in members) or 0.0,
                speedup=mean(r.speedup for r in members),
                macs_kept=mean(r.macs_kept for r in members) or 1.0,
                cells=[r.cell for r in members],
                expected_cells=expected[(target, model, metric, kind, value)],
            )
        )  # fmt: skip
    return found


def baseline_settings(rows: list[ResultRow]) -> list[Setting]:
    """Per (target, model): each baseline (one per held-out domain and seed in a sweep) counted once."""
    found = []
    for (target, model), members in group([r for r in rows if r.measured], lambda r: (r.target, r.model)).items():
        firsts = baseline_rows(members)
        found.append(
            Setting(
                target=target, model=model, metric=None, amount_kind=None, amount_value=None,
                held_out=mean(r.held_out_baseline for r in firsts) or 0.0, held_out_change=0.0,
                source_val=mean(r.source_val_baseline for r in firsts),
                p50_ms=mean(r.baseline_latency_p50_ms for r in members) or 0.0,  # every cell measured it
                speedup=1.0, macs_kept=1.0, cells=[r.cell for r in firsts], expected_cells=len(firsts),
            )
        )  # fmt: skip
    return found


def by_cell(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """One row per finished cell (accuracies do not depend on the target)."""
    return [members[0] for members in group([r for r in rows if r.status == "done"], lambda r: r.cell).values()]


def baseline_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    """One row per baseline (cells that reuse a baseline share it)."""
    return [members[0] for members in group(rows, lambda r: r.baseline_run or r.cell).values()]
