"""`edgeprune prune`: load and adapt, fine-tune the baseline, prune, fine-tune the pruned model, evaluate.

Each stage (baseline/, pruned/, finetuned/) is written atomically and skipped on `--resume` once complete; a stage
interrupted mid-training continues from its last epoch checkpoint in checkpoints/.
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.data.domains import DomainDataset, leave_one_domain_out
from edgeprune.data.loaders import (
    calibration_batches,
    data_config,
    eval_transform,
    make_loader,
    train_transform,
)
from edgeprune.errors import EdgepruneError
from edgeprune.models.artifact import load_description, load_model, save_model
from edgeprune.models.loading import create_model
from edgeprune.models.registry import ModelSpec, resolve_model
from edgeprune.pipeline.context import (
    RunData,
    cached_predictions,
    eval_loader,
    labels_of,
    load_dataset,
    resolve_data_root,
    versions,
)
from edgeprune.pipeline.recovery import merge_step_reports, step_config, teacher_model
from edgeprune.progress import Reporter
from edgeprune.prune.adapters import adapter_for
from edgeprune.prune.pruner import PruneConfig, prune_model
from edgeprune.train import TrainConfig, accuracy, fine_tune, predict
from edgeprune.workspace import Run, Workspace, atomic_dir, atomic_write_json, file_sha256, utc_now

STAGES = ("baseline", "pruned", "finetuned")


@dataclass
class PruneRequest:
    model: str
    ratio: float = 0.5
    metric: str = "hessian"
    data: Path | None = None
    target_domain: str = "sketch"
    checkpoint: Path | None = None
    random_init: bool = False
    baseline_epochs: int = 0
    epochs: int = 1
    baseline_run: str | None = None
    prune_heads: bool = False
    round_to: int | None = None
    target_macs: float | None = None
    target_params: float | None = None
    calib_batches: int = 4
    batch_size: int = 32
    lr: float = 1e-4
    baseline_lr: float | None = None
    max_steps_per_epoch: int | None = None
    val_fraction: float = 0.1
    workers: int = 0
    seed: int = 0
    normalization: str = "auto"
    max_share: float | None = None
    compensate: bool = True
    allow_narrow: bool = False
    distill: bool = False  # off by default: it cost held-out accuracy on PACS (README, Results)
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    steps: int = 1
    recovery_steps: int = 50

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PruneRequest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("data", "checkpoint"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)

    def validate(self) -> ModelSpec:
        spec = resolve_model(self.model)
        self.prune_config().validate()
        for name in ("baseline_epochs", "epochs"):
            if getattr(self, name) < 0:
                raise EdgepruneError(f"--{name.replace('_', '-')} must be 0 or more")
        if self.calib_batches < 1 or self.batch_size < 1:
            raise EdgepruneError("--calib-batches and --batch-size must be at least 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise EdgepruneError("--max-steps-per-epoch must be at least 1 (leave it out for whole epochs)")
        if self.workers < 0:
            raise EdgepruneError("--workers must be 0 (load in the main process) or more")
        if self.lr <= 0 or (self.baseline_lr is not None and self.baseline_lr <= 0):
            raise EdgepruneError("learning rates must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise EdgepruneError("the validation fraction must be in [0, 1)")
        if self.steps < 1 or self.recovery_steps < 0:
            raise EdgepruneError("--steps must be at least 1 and --recovery-steps 0 or more")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise EdgepruneError("--distill-weight is a share in [0, 1] and --distill-temperature must be positive")
        if self.checkpoint is not None and self.random_init:
            raise EdgepruneError("--checkpoint and --random-init exclude each other: give one")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise EdgepruneError(f"checkpoint {self.checkpoint} does not exist")
        return spec

    def prune_config(self) -> PruneConfig:
        return PruneConfig(
            metric=self.metric,
            ratio=self.ratio,
            prune_heads=self.prune_heads,
            round_to=self.round_to,
            target_macs=self.target_macs,
            target_params=self.target_params,
            normalization=self.normalization,
            max_share=self.max_share,
            compensate=self.compensate,
            allow_narrow=self.allow_narrow,
        )

    def amount(self) -> tuple[str, float]:
        """What decides how much is pruned: ("macs" | "params", fraction kept) or ("r", ratio)."""
        if self.target_macs is not None:
            return "macs", self.target_macs
        if self.target_params is not None:
            return "params", self.target_params
        return "r", self.ratio

    def default_run_name(self) -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        kind, value = self.amount()
        return f"{self.model.replace('_', '-')}-{self.metric}-{kind}{value:g}-{stamp}"


def _stage_metrics(
    stage: str,
    model: nn.Module,
    data: RunData,
    stage_dir: Path,
    request: PruneRequest,
    reporter: Reporter,
    extra: dict[str, Any],
) -> dict[str, Any]:
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
    metrics = {
        "source_val_accuracy": accuracy(val_preds, val_labels),
        "held_out_domain": target,
        "held_out_accuracy": accuracy(test_preds, labels_of(data.split.test)),
        **extra,
    }
    atomic_write_json(stage_dir / "metrics.json", metrics)
    reporter.info(
        f"{stage}: source val acc {metrics['source_val_accuracy']:.4f}, "
        f"held-out {target} acc {metrics['held_out_accuracy']:.4f}"
    )
    return metrics


def _train(
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
    """Fine-tune; a checkpoint left in the run by an interrupted attempt is always continued."""
    config = data_config(model)
    train_loader = make_loader(
        data.split.train,
        train_transform(config),
        request.batch_size,
        shuffle=True,
        workers=request.workers,
        seed=request.seed,
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


def _record_stage(run: Run, stage: str, seconds: float | None, **extra: Any) -> None:
    folder = run.stage(stage)
    run.update_manifest(
        stages={
            stage: {
                "status": "complete",
                "seconds": None if seconds is None else round(seconds, 1),
                "model_sha256": file_sha256(folder / "model.safetensors"),
                **extra,
            }
        }
    )


def _initial_model(spec: ModelSpec, num_classes: int, request: PruneRequest) -> nn.Module | None:
    """The loaded, head-adapted model (None when the baseline comes from another run)."""
    if request.baseline_run:
        return None
    torch.manual_seed(request.seed)  # the random init, when asked for, is reproducible
    model = create_model(spec, num_classes, checkpoint=request.checkpoint, random_init=request.random_init)
    adapter_for(model, spec.timm_name)  # fails early, naming what is missing, for an unsupported family
    return model


def _check_baseline_run(source: Run, spec: ModelSpec, dataset: DomainDataset) -> None:
    source.require_stage("baseline", "it has no finished baseline to reuse")
    manifest = source.manifest()
    if manifest["model"]["timm_name"] != spec.timm_name:
        raise EdgepruneError(
            f"--baseline-run {source.name} holds a {manifest['model']['timm_name']}, not the {spec.timm_name} "
            "asked for with --model"
        )
    if manifest["data"]["classes"] != list(dataset.classes):
        raise EdgepruneError(f"--baseline-run {source.name} was trained on other classes")


def _baseline_stage(
    run: Run,
    model: nn.Module | None,
    spec: ModelSpec,
    data: RunData,
    request: PruneRequest,
    workspace: Workspace,
    reporter: Reporter,
) -> None:
    start = time.perf_counter()
    num_classes = len(data.dataset.classes)
    create_kwargs = dict(spec.create_kwargs, num_classes=num_classes)
    if model is None:
        source = workspace.get_run(request.baseline_run)
        source_data = source.manifest()["data"]
        with atomic_dir(run.stage("baseline")) as folder:
            shutil.copytree(source.stage("baseline"), folder, dirs_exist_ok=True)
            own_data = run.manifest()["data"]
            same_split = all(
                source_data[k] == own_data[k] for k in ("fingerprint", "target_domain", "val_fraction", "seed")
            )
            if not same_split:  # other data or split: its metrics and cached predictions do not apply here
                shutil.rmtree(folder / "predictions", ignore_errors=True)
                _stage_metrics(
                    "baseline", load_model(folder), data, folder, request, reporter, {"reused_from": source.name}
                )
        reporter.info(f"baseline: reused from run {source.name}")
        _record_stage(run, "baseline", time.perf_counter() - start, reused_from=source.name)
        return
    history: list[dict[str, float]] = []
    if request.baseline_epochs:
        history = _train(
            model,
            data,
            request,
            request.baseline_epochs,
            request.baseline_lr or request.lr,
            run.dir / "checkpoints" / "baseline.pt",
            reporter,
            "baseline",
        )
    with atomic_dir(run.stage("baseline")) as folder:
        save_model(model, folder, spec.timm_name, create_kwargs)
        _stage_metrics(
            "baseline", model, data, folder, request, reporter, {"epochs": request.baseline_epochs, "history": history}
        )
    _record_stage(run, "baseline", time.perf_counter() - start)


_KEPT_NAMES = {"macs": "MACs", "params": "parameters"}


def _amount(request: PruneRequest) -> str:
    kind, value = request.amount()
    return f"ratio {value:g}" if kind == "r" else f"keeping {value:g} of the {_KEPT_NAMES[kind]}"


def _pruned_stage(run: Run, spec: ModelSpec, data: RunData, request: PruneRequest, reporter: Reporter) -> None:
    start = time.perf_counter()
    model = load_model(run.stage("baseline"))
    batches = calibration_batches(
        data.split.train,
        eval_transform(data_config(model)),
        request.calib_batches,
        request.batch_size,
        seed=request.seed,
    )
    torch.manual_seed(request.seed)  # the random metric, reproducible
    reporter.info(
        f"pruning: metric {request.metric}, {_amount(request)}"
        + (f" in {request.steps} steps" if request.steps > 1 else "")
        + f", {sum(len(x) for x, _ in batches)} calibration images from {', '.join(data.split.sources)}"
    )
    # The model to prune is the baseline: a copy of it is the recovery steps' teacher (no second read).
    teacher = copy.deepcopy(model).eval() if request.distill and request.steps > 1 else None
    reports: list[dict[str, Any]] = []
    kept = {"macs": 1.0, "params": 1.0}
    for step in range(1, request.steps + 1):
        report = prune_model(model, spec.timm_name, step_config(request, step, request.steps, kept), batches)
        reports.append(report)
        kept = {k: kept[k] * report["achieved"][f"{k}_kept"] for k in kept}
        if step < request.steps and request.recovery_steps:
            recovery = run.dir / "checkpoints" / f"recovery-{step}.pt"
            recovery.unlink(missing_ok=True)  # one left by an interrupted attempt belongs to another model
            _train(
                model,
                data,
                request,
                1,
                request.lr,
                recovery,
                reporter,
                f"recovery {step}/{request.steps - 1}",
                teacher=teacher,
                max_steps=request.recovery_steps,
            )
    report = reports[0] if len(reports) == 1 else merge_step_reports(reports)
    description = load_description(run.stage("baseline"))
    with atomic_dir(run.stage("pruned")) as folder:
        save_model(model, folder, description["timm_name"], description["create_kwargs"])
        atomic_write_json(folder / "prune_report.json", report)
        _stage_metrics(
            "pruned", model, data, folder, request, reporter, {"prune_seconds": round(time.perf_counter() - start, 1)}
        )
    _record_stage(run, "pruned", time.perf_counter() - start)


def _finetuned_stage(run: Run, data: RunData, request: PruneRequest, reporter: Reporter) -> None:
    start = time.perf_counter()
    if not request.epochs:  # nothing to train: the pruned model, its metrics and predictions are the result
        with atomic_dir(run.stage("finetuned")) as folder:
            shutil.copytree(run.stage("pruned"), folder, dirs_exist_ok=True)
        _record_stage(run, "finetuned", time.perf_counter() - start)
        return
    model = load_model(run.stage("pruned"))
    description = load_description(run.stage("pruned"))
    teacher = teacher_model(run, request)
    distillation = (
        {"teacher": "baseline", "weight": request.distill_weight, "temperature": request.distill_temperature}
        if teacher is not None
        else None
    )
    run.update_manifest(distillation=distillation)
    if teacher is not None:
        reporter.info(
            f"fine-tune: distilling from the baseline (weight {request.distill_weight:g}, "
            f"temperature {request.distill_temperature:g})"
        )
    history = _train(
        model,
        data,
        request,
        request.epochs,
        request.lr,
        run.dir / "checkpoints" / "finetune.pt",
        reporter,
        "fine-tune",
        teacher=teacher,
    )
    with atomic_dir(run.stage("finetuned")) as folder:
        save_model(model, folder, description["timm_name"], description["create_kwargs"])
        _stage_metrics(
            "finetuned",
            model,
            data,
            folder,
            request,
            reporter,
            {"epochs": request.epochs, "history": history, "distillation": distillation},
        )
    _record_stage(run, "finetuned", time.perf_counter() - start)


def resume_prune(workspace: Workspace, run_name: str | None = None, reporter: Reporter | None = None) -> Run:
    """Continue an interrupted run with the options it was started with."""
    reporter = reporter or Reporter()
    run = workspace.get_run(run_name)
    reporter.info(f"resuming run {run.name}")
    return _prune(PruneRequest.from_json(run.manifest()["request"]), workspace, run, None, reporter)


def run_prune(
    request: PruneRequest, workspace: Workspace, *, run_name: str | None = None, reporter: Reporter | None = None
) -> Run:
    """A new run: baseline, pruned and fine-tuned stages, each with its held-out metrics."""
    return _prune(request, workspace, None, run_name, reporter or Reporter())


def _prune(
    request: PruneRequest, workspace: Workspace, run: Run | None, run_name: str | None, reporter: Reporter
) -> Run:
    spec = request.validate()

    data_root = resolve_data_root(request.data, reporter)
    dataset = load_dataset(data_root, reporter)
    split = leave_one_domain_out(dataset, request.target_domain, request.val_fraction, request.seed)
    data = RunData(dataset, split)
    if run is None and request.baseline_run:
        _check_baseline_run(workspace.get_run(request.baseline_run), spec, dataset)
    initial = None
    if run is None or not run.has_stage("baseline"):
        # Load weights before creating the run, so a bad checkpoint leaves nothing behind.
        initial = _initial_model(spec, len(dataset.classes), request)
    if run is None:
        run = workspace.create_run(
            run_name or request.default_run_name(),
            {
                "edgeprune_run": 1,
                "created": utc_now(),
                "status": "running",
                "commands": [" ".join(sys.argv)],
                "request": request.to_json(),
                "model": {"name": spec.name, "timm_name": spec.timm_name, "create_kwargs": spec.create_kwargs},
                "seed": request.seed,
                "versions": versions(),
                "data": {
                    "root": str(data_root.resolve()),
                    "fingerprint": dataset.fingerprint(),
                    "domains": list(dataset.domains),
                    "classes": list(dataset.classes),
                    "counts": dataset.counts(),
                    "skipped_unreadable": len(dataset.skipped),
                    "unreadable_files": [str(p.relative_to(dataset.root)) for p in dataset.skipped],
                    "target_domain": split.target,
                    "val_fraction": request.val_fraction,
                    "seed": request.seed,
                },
                "split": split.summary(),
                "stages": {},
            },
        )
        reporter.info(f"run {run.name} in {workspace.root}")
    else:
        run.update_manifest(status="running", commands=run.manifest()["commands"] + [" ".join(sys.argv)])

    if not run.has_stage("baseline"):
        _baseline_stage(run, initial, spec, data, request, workspace, reporter)
    if not run.has_stage("pruned"):
        _pruned_stage(run, spec, data, request, reporter)
    if not run.has_stage("finetuned"):
        _finetuned_stage(run, data, request, reporter)
    recorded = run.manifest()["stages"]
    for stage in STAGES:  # a stage written just before an interrupt, but not yet in the manifest
        if stage not in recorded:
            _record_stage(run, stage, seconds=None)
    shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
    run.update_manifest(status="complete", finished=utc_now())
    workspace.set_latest(run)
    return run
