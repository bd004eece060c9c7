"""`edgeprune prune`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from edgeprune.cli import prune_options as o
from edgeprune.cli.app import (
    Augmentation,
    Compensation,
    JsonOpt,
    LatencyRanking,
    Metric,
    Normalization,
    WorkspaceOpt,
    app,
    plain,
    print_json,
    reporter,
    screen,
    user_errors,
    workspace_at,
)
from edgeprune.cli.render import print_prune_summary
from edgeprune.errors import EdgepruneError
from edgeprune.requests import PruneRequest as D  # the defaults
from edgeprune.results import PruneSummary

_REQUEST_FIELDS = {f.name for f in fields(D)}
_METRIC, _NORMALIZATION, _AUGMENT = Metric(D.metric), Normalization(D.normalization), Augmentation(D.augment)
_LATENCY_RANKING = LatencyRanking(D.latency_ranking)
_COMPENSATION = Compensation(D.compensation)


@app.command()
@user_errors
def prune(
    model: o.Model = None,
    ratio: o.Ratio = D.ratio,
    metric: o.MetricOpt = _METRIC,
    data: o.Data = D.data,
    target_domain: o.TargetDomain = D.target_domain,
    checkpoint: o.Checkpoint = D.checkpoint,
    random_init: o.RandomInit = D.random_init,
    baseline_epochs: o.BaselineEpochs = D.baseline_epochs,
    epochs: o.Epochs = D.epochs,
    baseline_run: o.BaselineRun = D.baseline_run,
    prune_heads: o.PruneHeads = D.prune_heads,
    whole_heads: o.WholeHeads = D.whole_heads,
    round_to: o.RoundTo = D.round_to,
    target_macs: o.TargetMacs = D.target_macs,
    target_params: o.TargetParams = D.target_params,
    target_latency: o.TargetLatency = D.target_latency,
    target_speedup: o.TargetSpeedup = D.target_speedup,
    profile: o.LatencyProfile = D.profile,
    target: o.LatencyTarget = None,
    latency_table: o.LatencyTablePath = D.latency_table,
    latency_ranking: o.LatencyRankingOpt = _LATENCY_RANKING,
    normalization: o.NormalizationOpt = _NORMALIZATION,
    max_share: o.MaxShare = D.max_share,
    cost_exponent: o.CostExponent = D.cost_exponent,
    compensate: o.Compensate = D.compensate,
    compensation: o.CompensationOpt = _COMPENSATION,
    allow_narrow: o.AllowNarrow = D.allow_narrow,
    distill: o.Distill = D.distill,
    distill_weight: o.DistillWeight = D.distill_weight,
    distill_temperature: o.DistillTemperature = D.distill_temperature,
    distill_mixup: o.DistillMixup = D.distill_mixup,
    distill_tokens: o.DistillTokens = D.distill_tokens,
    average_from: o.AverageFrom = D.average_from,
    steps: o.Steps = D.steps,
    recovery_steps: o.RecoverySteps = D.recovery_steps,
    calib_batches: o.CalibBatches = D.calib_batches,
    batch_size: o.BatchSize = D.batch_size,
    lr: o.Lr = D.lr,
    baseline_lr: o.BaselineLr = D.baseline_lr,
    augment: o.AugmentOpt = _AUGMENT,
    max_steps_per_epoch: o.MaxStepsPerEpoch = D.max_steps_per_epoch,
    checkpoint_every: o.CheckpointEvery = D.checkpoint_every,
    workers: o.Workers = D.workers,
    classes_from: o.ClassesFrom = D.classes_from,
    evaluate: o.Evaluate = D.evaluate,
    eval_images: o.EvalImages = D.eval_images,
    seed: o.Seed = D.seed,
    run: o.NewRun = None,
    resume: o.Resume = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Load and adapt a model, fine-tune it on the source domains, prune it globally, fine-tune it again.

    Examples:

      edgeprune prune --model deit-tiny --checkpoint deit_tiny.safetensors --data PACS --target-domain sketch \\
        --ratio 0.5 --metric hessian --baseline-epochs 1 --epochs 1

      edgeprune prune --model vit-micro --random-init --baseline-epochs 20 --epochs 5

    The recovery that kept most of a held-out PACS domain (README, Results):

      edgeprune prune --model deit-tiny --checkpoint deit_tiny.safetensors --data PACS --target-domain art_painting \\
        --target-macs 0.62 --baseline-epochs 1 --distill-tokens 10 --batch-size 16 --calib-batches 32

    To a latency on a hardware profile (the latency table is measured first when the workspace has none):

      edgeprune prune --model deit-small --random-init --epochs 0 --target-speedup 2 --profile cpu-x86 \\
        --target ort-cpu

      edgeprune prune --resume --run my-run

    Data-parallel on N processes (gloo on CPU, NCCL with a GPU each); rank 0 alone prunes, evaluates and writes.
    --batch-size is the global batch, split evenly across the processes; --workers is per process.

      torchrun --nproc-per-node 2 -m edgeprune prune --model vit-micro --random-init --epochs 5
    """
    options = {name: plain(value) for name, value in locals().items() if name in _REQUEST_FIELDS}
    request = None if resume else _request(options)
    if request is not None:
        request.validate()  # before torch is imported: a bad option is refused at once
    from edgeprune.distributed import session
    from edgeprune.pipeline.prune import resume_prune, run_prune
    from edgeprune.progress import Reporter

    ws = workspace_at(workspace)
    with session() as world:
        progress = reporter() if world.is_main else Reporter()  # the other processes print errors only
        if request is None:
            result = resume_prune(ws, run, progress)
        else:
            result = run_prune(request, ws, run_name=run, reporter=progress)
        if world.is_main:
            metrics = {stage: result.metrics(stage) for stage in ("baseline", "pruned", "finetuned")}
            report = result.prune_report()
            print_prune_summary(screen(json_out), result.name, report, metrics)
            if json_out:
                summary = PruneSummary(run=result.name, dir=str(result.dir), prune_report=report, metrics=metrics)
                print_json(summary.to_json())


def _request(options: dict[str, Any]) -> D:
    if options["model"] is None:
        raise EdgepruneError("give --model (e.g. --model deit-tiny), or --resume to continue a run")
    return D(**options)
