"""`edgeprune prune`: load and adapt, fine-tune the baseline, prune, fine-tune the pruned model, evaluate.

Each stage (baseline/, pruned/, finetuned/) is written atomically and skipped on `--resume` once complete; a stage
interrupted mid-training continues from its last epoch checkpoint in checkpoints/.
"""

from __future__ import annotations

import copy
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.data.domains import DomainDataset, LeaveOneDomainOut, leave_one_domain_out
from edgeprune.data.loaders import calibration_batches, data_config, eval_transform
from edgeprune.errors import EdgepruneError
from edgeprune.models.artifact import load_description, load_model, save_model
from edgeprune.models.loading import create_task_model
from edgeprune.models.registry import ModelSpec
from edgeprune.pipeline.context import RunData, load_dataset, resolve_data_root, versions
from edgeprune.pipeline.recovery import merge_step_reports, step_config, teacher_model
from edgeprune.pipeline.stages import evaluate_stage, record_stage, train_model
from edgeprune.progress import Reporter
from edgeprune.prune.adapters import adapter_for
from edgeprune.prune.pruner import prune_model
from edgeprune.requests import PruneRequest
from edgeprune.results import PruneReport
from edgeprune.workspace import PRUNE_REPORT_FILE, Run, Workspace, atomic_dir, utc_now

__all__ = ["STAGES", "PruneRequest", "resume_prune", "run_prune"]

STAGES = ("baseline", "pruned", "finetuned")


def _initial_model(spec: ModelSpec, num_classes: int, request: PruneRequest) -> tuple[nn.Module, bool] | None:
    """The loaded, head-adapted model and whether its classifier is trained for the task (None when the baseline
    comes from another run)."""
    if request.baseline_run:
        return None
    torch.manual_seed(request.seed)  # the random init, when asked for, is reproducible
    model, head_trained = create_task_model(
        spec, num_classes, checkpoint=request.checkpoint, random_init=request.random_init
    )
    adapter_for(model, spec.timm_name)  # fails early, naming what is missing, for an unsupported family
    return model, head_trained


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
    initial: tuple[nn.Module, bool] | None,
    spec: ModelSpec,
    data: RunData,
    request: PruneRequest,
    workspace: Workspace,
    reporter: Reporter,
) -> None:
    start = time.perf_counter()
    num_classes = len(data.dataset.classes)
    create_kwargs = dict(spec.create_kwargs, num_classes=num_classes)
    if initial is None:
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
                evaluate_stage(
                    "baseline", load_model(folder), data, folder, request, reporter, {"reused_from": source.name}
                )
        reporter.info(f"baseline: reused from run {source.name}")
        record_stage(run, "baseline", time.perf_counter() - start, reused_from=source.name)
        return
    model, head_trained = initial
    epochs = request.baseline_epochs_for(head_trained)
    if request.baseline_epochs is None and epochs:
        reporter.info(
            f"baseline: the classifier is new for these {num_classes} classes, so the baseline is fine-tuned for "
            f"{epochs} epoch(s) like the pruned model (--baseline-epochs 0 to skip)"
        )
    history: list[dict[str, float]] = []
    if epochs:
        history = train_model(
            model,
            data,
            request,
            epochs,
            request.baseline_lr or request.lr,
            run.dir / "checkpoints" / "baseline.pt",
            reporter,
            "baseline",
        )
    with atomic_dir(run.stage("baseline")) as folder:
        save_model(model, folder, spec.timm_name, create_kwargs)
        evaluate_stage("baseline", model, data, folder, request, reporter, {"epochs": epochs, "history": history})
    record_stage(run, "baseline", time.perf_counter() - start)


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
        f"pruning: metric {request.metric}, {request.amount().describe()}"
        + (f" in {request.steps} steps" if request.steps > 1 else "")
        + f", {sum(len(x) for x, _ in batches)} calibration images from {', '.join(data.split.sources)}"
        + ("" if request.prune_config().compensate or not request.compensate else "; no compensation (random weights)")
    )
    # The model to prune is the baseline: a copy of it is the recovery steps' teacher (no second read).
    teacher = copy.deepcopy(model).eval() if request.distill and request.steps > 1 else None
    reports: list[PruneReport] = []
    kept = {"macs": 1.0, "params": 1.0}
    for step in range(1, request.steps + 1):
        report = prune_model(model, spec.timm_name, step_config(request, step, request.steps, kept), batches)
        reports.append(report)
        kept = {
            "macs": kept["macs"] * report.achieved.macs_kept,
            "params": kept["params"] * report.achieved.params_kept,
        }
        if step < request.steps and request.recovery_steps:
            recovery = run.dir / "checkpoints" / f"recovery-{step}.pt"
            recovery.unlink(missing_ok=True)  # one left by an interrupted attempt belongs to another model
            train_model(
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
        report.write(folder / PRUNE_REPORT_FILE)
        evaluate_stage(
            "pruned", model, data, folder, request, reporter, {"prune_seconds": round(time.perf_counter() - start, 1)}
        )
    record_stage(run, "pruned", time.perf_counter() - start)


def _finetuned_stage(run: Run, data: RunData, request: PruneRequest, reporter: Reporter) -> None:
    start = time.perf_counter()
    if not request.epochs:  # nothing to train: the pruned model, its metrics and predictions are the result
        with atomic_dir(run.stage("finetuned")) as folder:
            shutil.copytree(run.stage("pruned"), folder, dirs_exist_ok=True)
        record_stage(run, "finetuned", time.perf_counter() - start)
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
    history = train_model(
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
        evaluate_stage(
            "finetuned",
            model,
            data,
            folder,
            request,
            reporter,
            {"epochs": request.epochs, "history": history, "distillation": distillation},
        )
    record_stage(run, "finetuned", time.perf_counter() - start)


def resume_prune(workspace: Workspace, run_name: str | None = None, reporter: Reporter | None = None) -> Run:
    """Continue an interrupted run with the options it was started with."""
    reporter = reporter or Reporter()
    run = workspace.get_run(run_name)
    with run.writing("prune --resume"):  # refused at once, naming the process, while another one writes the run
        pass
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
    workspace.ensure_writable()
    data_root = resolve_data_root(request.data, reporter)
    dataset = load_dataset(data_root, reporter, classes_from=request.classes_from)
    split = leave_one_domain_out(dataset, request.target_domain, request.val_fraction, request.seed)
    data = RunData(dataset, split)
    if run is None and request.baseline_run:
        _check_baseline_run(workspace.get_run(request.baseline_run), spec, dataset)
    initial = None
    if run is None or not run.has_stage("baseline"):
        # Load weights before creating the run, so a bad checkpoint leaves nothing behind.
        initial = _initial_model(spec, len(dataset.classes), request)
    if run is None:
        manifest = _new_manifest(request, spec, data_root, dataset, split)
        run = workspace.create_run(run_name or request.default_run_name(), manifest)
        reporter.info(f"run {run.name} in {workspace.root}")
        with run.writing("prune"):
            _run_stages(run, initial, spec, data, request, workspace, reporter)
        return run
    with run.writing("prune --resume"):
        run.update_manifest(status="running", commands=run.manifest()["commands"] + [" ".join(sys.argv)])
        _run_stages(run, initial, spec, data, request, workspace, reporter)
    return run


def _run_stages(
    run: Run,
    initial: tuple[nn.Module, bool] | None,
    spec: ModelSpec,
    data: RunData,
    request: PruneRequest,
    workspace: Workspace,
    reporter: Reporter,
) -> None:
    if not run.has_stage("baseline"):
        _baseline_stage(run, initial, spec, data, request, workspace, reporter)
    if not run.has_stage("pruned"):
        _pruned_stage(run, spec, data, request, reporter)
    if not run.has_stage("finetuned"):
        _finetuned_stage(run, data, request, reporter)
    recorded = run.manifest()["stages"]
    for stage in STAGES:  # a stage written just before an interrupt, but not yet in the manifest
        if stage not in recorded:
            record_stage(run, stage, seconds=None)
    shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
    run.update_manifest(status="complete", finished=utc_now())
    workspace.set_latest(run)


def _new_manifest(
    request: PruneRequest, spec: ModelSpec, data_root: Path, dataset: DomainDataset, split: LeaveOneDomainOut
) -> dict[str, Any]:
    return {
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
            "classes_from": dataset.classes_from,
            "report": dataset.report(),
            "target_domain": split.target,
            "val_fraction": request.val_fraction,
            "seed": request.seed,
        },
        "split": split.summary(),
        "stages": {},
    }
