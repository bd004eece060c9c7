"""pareto.png: held-out accuracy against measured p50 latency, one panel per target (matplotlib, Agg canvas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.report.frontier import TargetSummary
from edgeprune.workspace import atomic_path

_MARKERS = "ovs^Dph<>"


def _colours(summaries: list[TargetSummary]) -> dict[str, Any]:
    from matplotlib import colormaps

    metrics = sorted({p.metric for s in summaries for p in s.points if p.metric is not None})
    palette = colormaps["tab10"]
    return {metric: palette(i % 10) for i, metric in enumerate(metrics)}


def _points(ax: Any, summary: TargetSummary, colours: dict[str, Any], models: list[str]) -> None:
    seen: set[str] = set()
    for point in summary.points:
        marker = _MARKERS[models.index(point.model) % len(_MARKERS)]
        if point.baseline:
            label = "baseline (unpruned)" if "baseline" not in seen else None
            seen.add("baseline")
            ax.scatter(point.p50_ms, point.held_out, marker="X", s=90, color="black", label=label, zorder=3)
            continue
        label = point.metric if point.metric not in seen else None
        seen.add(str(point.metric))
        hollow = not point.complete  # some of its cells failed: averaged over fewer domains / seeds
        ax.scatter(
            point.p50_ms, point.held_out, marker=marker, s=45, label=label, zorder=3,
            facecolors="none" if hollow else colours[point.metric], edgecolors=colours[point.metric],
        )  # fmt: skip


def _frontier(ax: Any, summary: TargetSummary, many_models: bool) -> None:
    """The frontier as a step line; labels on its points (and on every point while there are few)."""
    front = summary.front
    if front:
        right = max(p.p50_ms for p in summary.points)  # the best accuracy reachable at each latency, to the last point
        xs, ys = [p.p50_ms for p in front] + [right], [p.held_out for p in front] + [front[-1].held_out]
        ax.step(xs, ys, where="post", color="grey", linestyle="--", linewidth=1, label="frontier (held-out)", zorder=2)
    label_all = len(summary.points) <= 12
    for point in summary.points:
        if point is summary.recommended or (point not in front and not label_all):
            continue
        text = point.label if many_models else point.short
        colour = "black" if point in front else "dimgrey"
        ax.annotate(
            text, (point.p50_ms, point.held_out), textcoords="offset points", xytext=(5, -11), fontsize=7, color=colour
        )


def _budget_and_choice(ax: Any, summary: TargetSummary) -> str:
    """Draws the budget (when it is in view) and the recommendation; returns the panel's subtitle."""
    latencies = [p.p50_ms for p in summary.points]
    budget = summary.budget_ms
    if budget is not None and latencies and budget <= 1.5 * max(latencies):
        ax.axvline(budget, color="red", linestyle=":", linewidth=1, label=f"budget {budget:g} ms")
    note = "no budget" if budget is None else f"budget {budget:g} ms ({summary.profile})"
    chosen = summary.recommended
    if chosen is None:
        return f"{note}: nothing fits"
    ax.scatter(chosen.p50_ms, chosen.held_out, marker="*", s=380, facecolors="none", edgecolors="red", zorder=4,
               linewidths=1.5, label="deploy (chosen on source val)")  # fmt: skip
    left = chosen.p50_ms > (min(latencies) + max(latencies)) / 2  # keep the label inside the panel
    ax.annotate(
        f"deploy: {chosen.label}", (chosen.p50_ms, chosen.held_out), textcoords="offset points",
        xytext=(-12 if left else 12, 18), ha="right" if left else "left", fontsize=8, fontweight="bold", color="red",
        arrowprops={"arrowstyle": "-", "color": "red", "lw": 0.8},
    )  # fmt: skip
    return f"{note}; deploy {chosen.label}"


def plot_pareto(summaries: list[TargetSummary], path: Path, title: str, batch: dict[str, int | None]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [s for s in summaries if s.points]
    fig = Figure(figsize=(7.0 * max(1, len(panels)), 5.8))
    FigureCanvasAgg(fig)
    colours = _colours(panels)
    models = sorted({p.model for s in panels for p in s.points})
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, summary in zip(axes, panels, strict=False):
        _points(ax, summary, colours, models)
        _frontier(ax, summary, len(models) > 1)
        subtitle = _budget_and_choice(ax, summary)
        latencies = [p.p50_ms for p in summary.points]
        if min(latencies) > 0 and max(latencies) / min(latencies) > 20:
            ax.set_xscale("log")
        ax.set_title(f"{summary.target}\n{subtitle}", fontsize=9)
        ax.set_xlabel(f"p50 latency, ms (batch {batch.get(summary.target) or '?'}; lower is better)")
        ax.set_ylabel("held-out accuracy, mean over domains")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.12, y=0.2)  # room for the labels
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    if not panels:
        axes[0].text(0.5, 0.5, "no measured cells yet", ha="center", va="center")
    notes = ["models: marker shape"] if len(models) > 1 else []
    if any(not p.complete for s in panels for p in s.points):
        notes.append("hollow: some of its cells failed or are missing")
    fig.suptitle(f"{title}: held-out accuracy vs latency" + (f" ({'; '.join(notes)})" if notes else ""), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
