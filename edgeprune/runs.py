"""One summary per run of a workspace, read from what the run recorded (no model is loaded): what `edgeprune runs`
lists and `scripts/summarize_runs.py` writes as markdown."""

from __future__ import annotations

from edgeprune.requests import PruneRequest
from edgeprune.results import BeforeAfter, Result
from edgeprune.workspace import Run, Workspace

STAGES = ("baseline", "pruned", "finetuned")


class RunSummary(Result):
    name: str
    status: str  # "complete", "running" (a process writes it now) or "interrupted" (killed or crashed)
    model: str
    metric: str
    amount: str  # as in run names: r0.5 (ratio of units removed), macs0.6 / params0.4 (fraction kept)
    held_out_domain: str
    epochs: int  # fine-tune epochs after pruning
    max_steps_per_epoch: int | None  # None: whole epochs
    macs: BeforeAfter | None  # None until the pruned stage is written
    params: BeforeAfter | None
    held_out_accuracy: dict[str, float]  # per finished stage (baseline, pruned, finetuned)
    source_val_accuracy: dict[str, float | None]
    benched: list[str]  # bench reports, as <target>-<domain>


def summarize_run(run: Run) -> RunSummary:
    manifest = run.manifest()
    request = PruneRequest.from_json(manifest["request"])
    stages = [stage for stage in STAGES if run.has_stage(stage)]
    metrics = {stage: run.metrics(stage) for stage in stages}
    report = run.prune_report() if "pruned" in stages else None
    return RunSummary(
        name=run.name,
        status=run.status(),
        model=request.model,
        metric=request.metric,
        amount=request.amount().tag(),
        held_out_domain=request.target_domain,
        epochs=request.epochs,
        max_steps_per_epoch=request.max_steps_per_epoch,
        macs=report.macs if report else None,
        params=report.params if report else None,
        held_out_accuracy={stage: m.held_out_accuracy for stage, m in metrics.items()},
        source_val_accuracy={stage: m.source_val_accuracy for stage, m in metrics.items()},
        benched=[f"{b.target}-{b.domain}" for b in run.bench_reports()],
    )


def summarize_runs(workspace: Workspace, names: list[str] | None = None) -> list[RunSummary]:
    """The named runs, else every run of the workspace (by name)."""
    return [summarize_run(workspace.get_run(name)) for name in names or workspace.list_runs()]
