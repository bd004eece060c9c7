"""What every stage of `edgeprune prune` does the same way: train a model, evaluate it, record the stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgeprune.data.loaders import data_config, eval_transform, make_loader, train_transform
from edgeprune.distributed import current
from edgeprune.models.artifact import WEIGHTS_FILE
from edgeprune.pipeline.context import RunData, cached_predictions, eval_loader, labels_of, sample_subset
from edgeprune.progress import Reporter
from edgeprune.requests import PruneRequest
from edgeprune.results import PredictionSpread, StageMetrics
from edgeprune.train import TrainConfig, accuracy, fine_tune, predict
from edgeprune.workspace import METRICS_FILE, Run, file_sha256


def evaluate_stage(
    stage: str,
    model: nn.Module,
    data: RunData,
    stage_dir: Path,
    request: PruneRequest,
    reporter: Reporter,
    extra: dict[str, Any],
) -> StageMetrics:
    """Source-validation and held-out accuracy of a stage's model (on --eval-images of each split, when given),
    saved with its held-out predictions; skipped with --no-eval, and for a random model that nothing trained."""
    target = data.split.target
    reason = _no_evaluation(stage, request)
    if reason is not None:
        metrics = StageMetrics(held_out_domain=target, not_evaluated=reason, **extra)
        metrics.write(stage_dir / METRICS_FILE)
        reporter.info(f"{stage}: accuracy not evaluated ({reason})")
        return metrics
    val = sample_subset(data.split.val, request.eval_images, request.seed)
    test = sample_subset(data.split.test, request.eval_images, request.seed)
    val_preds, val_labels = predict(
        model, eval_loader(model, val, workers=request.workers), reporter=reporter, description="source val"
    )
    test_preds = cached_predictions(
        stage_dir,
        target,
        test,
        lambda: predict(
            model,
            eval_loader(model, test, workers=request.workers),
            reporter=reporter,
            description=f"held-out {target}",
        )[0],
    )
    metrics = StageMetrics(
        source_val_accuracy=accuracy(val_preds, val_labels),
        held_out_domain=target,
        held_out_accuracy=accuracy(test_preds, labels_of(test)),
        evaluated_images={"source_val": len(val), "held_out": len(test)},
        chance_accuracy=1 / len(data.dataset.classes),
        held_out_spread=PredictionSpread.of(test_preds, data.dataset.classes),
        **extra,
    )
    metrics.write(stage_dir / METRICS_FILE)
    subset = f" ({len(val)} / {len(test)} images)" if request.eval_images else ""
    reporter.info(
        f"{stage}: source val acc {metrics.source_val_accuracy:.4f}, "
        f"held-out {target} acc {metrics.held_out_accuracy:.4f}{subset} (chance {metrics.chance_accuracy:.4f})"
        + _dominance_note(metrics.held_out_spread, target)
    )
    return metrics


def _dominance_note(spread: PredictionSpread | None, domain: str) -> str:
    if spread is None or not spread.dominated:
        return ""
    return f"; {spread.top_share:.0%} of the {domain} images are called '{spread.top_class}'"


def _no_evaluation(stage: str, request: PruneRequest) -> str | None:
    if not request.evaluate:
        return "--no-eval"
    if not request.has_learnt(stage):
        return "random weights that nothing trained: their accuracy is chance"
    return None


def train_model(
    model: nn.Module,
    data: RunData,
    request: PruneRequest,
    epochs: int,
    lr: float,
    checkpoint: Path,
    reporter: Reporter,
    label: str,
    teacher: nn.Module | None = None,
    max_steps: int | None = None,
    average_from: float | None = None,
) -> list[dict[str, float]]:
    """Fine-tune; a checkpoint left in the run by an interrupted attempt is always continued.

    Under torchrun, --batch-size is the global batch: each of the N processes loads batch_size / N images a step
    from its shard, so a step (and --max-steps-per-epoch) means what it means in one process.
    """
    config = data_config(model)
    world = current()
    train_loader = make_loader(
        data.split.train,
        train_transform(config, request.augment),
        world.per_rank_batch(request.batch_size),
        shuffle=True,
        workers=request.workers,
        seed=request.seed,
        shard=(world.rank, world.world_size) if world.enabled else None,
    )
    val_loader = make_loader(data.split.val, eval_transform(config), 64, shuffle=False, workers=request.workers)
    train_config = TrainConfig(
        epochs=epochs,
        lr=lr,
        max_steps_per_epoch=max_steps or request.max_steps_per_epoch,
        seed=request.seed,
        distill_weight=request.distill_weight if teacher is not None else 0.0,
        distill_temperature=request.distill_temperature,
        distill_mixup=request.distill_mixup if teacher is not None else 0.0,
        distill_tokens=request.distill_tokens if teacher is not None else 0.0,
        checkpoint_every=request.checkpoint_every,
        average_from=average_from,
    )
    return fine_tune(
        model,
        train_loader,
        val_loader if max_steps is None else None,
        train_config,
        checkpoint,
        resume=True,
        reporter=reporter,
        label=label,
        teacher=teacher,
    )


def record_stage(run: Run, stage: str, seconds: float | None, **extra: Any) -> None:
    folder = run.stage(stage)
    world = current()
    if world.enabled:
        extra["processes"] = world.world_size
    run.update_manifest(
        stages={
            stage: {
                "status": "complete",
                "seconds": None if seconds is None else round(seconds, 1),
                "model_sha256": file_sha256(folder / WEIGHTS_FILE),
                **extra,
            }
        }
    )
