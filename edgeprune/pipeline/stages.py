"""What every stage of `edgeprune prune` does the same way: train a model, evaluate it, record the stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgeprune.data.loaders import data_config, eval_transform, make_loader, train_transform
from edgeprune.distributed import current
from edgeprune.models.artifact import WEIGHTS_FILE
from edgeprune.pipeline.context import RunData, cached_predictions, eval_loader, labels_of
from edgeprune.progress import Reporter
from edgeprune.requests import PruneRequest
from edgeprune.results import StageMetrics
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
    """Source-validation and held-out accuracy of a stage's model, saved with its held-out predictions."""
    target = data.split.target
    val_preds, val_labels = predict(
        model, eval_loader(model, data.split.val, workers=request.workers), reporter=reporter, description="source val"
    )
    test_preds = cached_predictions(
        stage_dir,
        target,
        data.split.test,
        lambda: predict(
            model,
            eval_loader(model, data.split.test, workers=request.workers),
            reporter=reporter,
            description=f"held-out {target}",
        )[0],
    )
    metrics = StageMetrics(
        source_val_accuracy=accuracy(val_preds, val_labels),
        held_out_domain=target,
        held_out_accuracy=accuracy(test_preds, labels_of(data.split.test)),
        **extra,
    )
    metrics.write(stage_dir / METRICS_FILE)
    reporter.info(
        f"{stage}: source val acc {metrics.source_val_accuracy:.4f}, "
        f"held-out {target} acc {metrics.held_out_accuracy:.4f}"
    )
    return metrics


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
) -> list[dict[str, float]]:
    """Fine-tune; a checkpoint left in the run by an interrupted attempt is always continued.

    Under torchrun, --batch-size is the global batch: each of the N processes loads batch_size / N images a step
    from its shard, so a step (and --max-steps-per-epoch) means what it means in one process.
    """
    config = data_config(model)
    world = current()
    train_loader = make_loader(
        data.split.train,
        train_transform(config),
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
