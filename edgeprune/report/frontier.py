"""The accuracy/latency frontier of each target and the recommendation within a latency budget.

Selection is honest in DomainBed's sense: the recommended setting is the one with the best source-domain
validation accuracy among those within the budget; held-out accuracy is reported, never selected on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeprune.report.aggregate import Setting

SELECTION_NOTE = (
    "Model selection uses source-domain validation accuracy only (the held-out domain is never seen in training, "
    "pruning or selection); held-out accuracy is reported, not selected on. The frontier is drawn on held-out "
    "accuracy to show the trade-off, not to choose from."
)


def frontier(points: list[Setting]) -> list[Setting]:
    """The settings no other beats on both held-out accuracy and p50 latency, fastest first."""
    best = float("-inf")
    found = []
    for point in sorted(points, key=lambda p: (p.p50_ms, -p.held_out)):
        if point.held_out > best:
            found.append(point)
            best = point.held_out
    return found


def dominated(point: Setting, points: list[Setting]) -> bool:
    return any(
        other is not point
        and other.p50_ms <= point.p50_ms
        and other.held_out >= point.held_out
        and (other.p50_ms < point.p50_ms or other.held_out > point.held_out)
        for other in points
    )


def recommend(points: list[Setting], budget_ms: float | None) -> Setting | None:
    """The best source-validation accuracy within the budget (the faster one on a tie); None if none fits."""
    eligible = [p for p in points if p.source_val is not None and (budget_ms is None or p.p50_ms <= budget_ms)]
    if not eligible:
        return None
    return max(eligible, key=lambda p: (p.source_val, -p.p50_ms))


@dataclass
class TargetSummary:
    target: str
    profile: str | None
    budget_ms: float | None
    points: list[Setting]
    front: list[Setting] = field(default_factory=list)
    recommended: Setting | None = None

    @classmethod
    def build(cls, target: str, profile: str | None, budget_ms: float | None, points: list[Setting]) -> TargetSummary:
        return cls(target, profile, budget_ms, points, frontier(points), recommend(points, budget_ms))

    def recommendation(self) -> str:
        """One line: what to deploy on this target, and why."""
        budget = f"the {self.budget_ms:g} ms budget of {self.profile}" if self.budget_ms is not None else "no budget"
        chosen = self.recommended
        if chosen is None:
            fastest = min(self.points, key=lambda p: p.p50_ms, default=None)
            tail = f"; the fastest is {fastest.label} at {fastest.p50_ms:.2f} ms" if fastest else ""
            return f"{self.target}: nothing measured fits {budget}{tail}"
        change = "" if chosen.baseline or chosen.held_out_change is None else (
            f" ({chosen.held_out_change * 100:+.2f} points vs baseline)")  # fmt: skip
        speed = "" if chosen.baseline or chosen.speedup is None else f", {chosen.speedup:.2f}x faster"
        return (
            f"{self.target}: deploy {chosen.label}: source val {chosen.source_val:.4f} (selected on this), held-out "
            f"{chosen.held_out:.4f}{change}, p50 {chosen.p50_ms:.2f} ms within {budget}{speed}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "profile": self.profile,
            "latency_budget_ms": self.budget_ms,
            "selection": "source-domain validation accuracy within the latency budget",
            "recommendation": self.recommendation(),
            "recommended": self.recommended.to_json() if self.recommended else None,
            "frontier": [p.to_json() for p in self.front],
            "points": [p.to_json() for p in self.points],
        }
