"""`edgeprune prune`: load and adapt, fine-tune the baseline, prune, fine-tune the pruned model, evaluate.

Each stage (baseline/, pruned/, finetuned/) is written atomically and skipped on `--resume` once complete; a stage
interrupted mid-training continues from its last epoch checkpoint in checkpoints/.

Under torchrun (`edgeprune.distributed`) every process runs these functions: all of them train, rank 0 alone
prunes, evaluates and writes the run (inside `World.on_main`, which the others wait for); every decision that
could differ between processes (the run's name, the data set, the pruned model) is rank 0's, sent to the others.
"""

from __future__ import annotations

import contextlib
import copy
import math
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.data.domains import DomainDataset, LeaveOneDomainOut, leave_one_domain_out
from edgeprune.data.loaders import calibration_batches, data_config, eval_transform
from edgeprune.distributed import current
from edgeprune.errors import EdgepruneError
from edgeprune.models.artifact import build_from_description, describe, load_description, load_model, save_model
from edgeprune.models.loading import create_task_model
from edgeprune.models.registry import ModelSpec
from edgeprune.pipeline.context import RunData, load_dataset, resolve_data_root, versions
from edgeprune.pipeline.latency import LatencyGoal, latency_goal, prune_to_latency
from edgeprune.pipeline.recovery import distills, merge_step_reports, step_config, teacher_model
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
    world = current()
    if initial is None:
        world.on_main(lambda: _reuse_baseline(run, data, request, workspace, reporter, start), share=False)
        return
    model, head_trained = initial
    if request.checkpoint is not None and not head_trained:
        reporter.info(
            f"checkpoint {request.checkpoint.name}: its classifier was made for other classes; a new one for these "
            f"{len(data.dataset.classes)} classes replaces it"
        )
    epochs = request.baseline_epochs_for(head_trained)
    if request.baseline_epochs is None and epochs:
        reporter.info(
            f"baseline: the classifier is new for these {len(data.dataset.classes)} classes, so the baseline is "
            f"fine-tuned for {epochs} epoch(s) like the pruned model (--baseline-epochs 0 to skip)"
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

    def publish() -> None:
        create_kwargs = dict(spec.create_kwargs, num_classes=len(data.dataset.classes))
        with atomic_dir(run.stage("baseline")) as folder:
            save_model(model, folder, spec.timm_name, create_kwargs)
            extra = {"epochs": epochs, "history": history}
            evaluate_stage("baseline", model, data, folder, request, reporter, extra)
        record_stage(run, "baseline", time.perf_counter() - start)

    world.on_main(publish, share=False)


def _reuse_baseline(
    run: Run, data: RunData, request: PruneRequest, workspace: Workspace, reporter: Reporter, start: float
) -> None:
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


def _calibration(
    model: nn.Module, data: RunData, request: PruneRequest, reporter: Reporter
) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
        + _compensation_note(request)
    )
    return batches


def _compensation_note(request: PruneRequest) -> str:
    if request.prune_config().compensate:
        return f"; compensation: {request.compensation}"
    return "; no compensation (random weights)" if request.compensate else ""


def _prune_step(
    model: nn.Module,
    spec: ModelSpec,
    request: PruneRequest,
    step: int,
    reports: list[PruneReport],
    batches: Any,
    goal: LatencyGoal | None,
    reporter: Reporter,
) -> nn.Module:
    """Step `step` of the pruning, on rank 0: its report joins `reports`; returns the pruned model."""
    if goal is not None:  # one step (checked): prune copies until one measures close to the goal
        pruned, report = prune_to_latency(model, spec.timm_name, request.prune_config(), batches, goal, reporter)
        reports.append(report)
        return pruned
    kept = {
        "macs": math.prod(r.achieved.macs_kept for r in reports),
        "params": math.prod(r.achieved.params_kept for r in reports),
    }
    reports.append(prune_model(model, spec.timm_name, step_config(request, step, request.steps, kept), batches))
    return model


def _model_of_rank0(run: Run, model: nn.Module) -> nn.Module:
    """Rank 0's model (which it alone pruned) on every process, for the recovery training they share."""
    world = current()
    if not world.enabled:
        return model
    description = load_description(run.stage("baseline"))

    def portable() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        desc = describe(model, description["timm_name"], description["create_kwargs"])
        return desc, {k: v.detach().cpu() for k, v in model.state_dict().items()}

    desc, state = world.on_main(portable)
    if world.is_main:
        return model
    rebuilt = build_from_description(desc)
    rebuilt.load_state_dict(state, strict=True)
    return rebuilt


def _pruned_stage(
    run: Run, spec: ModelSpec, data: RunData, request: PruneRequest, reporter: Reporter, goal: LatencyGoal | None
) -> None:
    """Rank 0 prunes; under torchrun, the recovery steps between pruning steps train on every process."""
    start = time.perf_counter()
    world = current()
    model = load_model(run.stage("baseline"))
    batches = world.on_main(lambda: _calibration(model, data, request, reporter), share=False)
    # The model to prune is the baseline: a copy of it is the recovery steps' teacher (no second read).
    teacher = copy.deepcopy(model).eval() if request.steps > 1 and distills(request) else None
    reports: list[PruneReport] = []
    for step in range(1, request.steps + 1):
        pruned = world.on_main(
            partial(_prune_step, model, spec, request, step, reports, batches, goal, reporter), share=False
        )
        model = pruned if world.is_main else model
        if step < request.steps and request.recovery_steps:
            model = _model_of_rank0(run, model)
            recovery = run.dir / "checkpoints" / f"recovery-{step}.pt"
            # one left by an interrupted attempt belongs to another model
            world.on_main(partial(recovery.unlink, missing_ok=True), share=False)
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

    def publish() -> None:
        report = reports[0] if len(reports) == 1 else merge_step_reports(reports)
        description = load_description(run.stage("baseline"))
        with atomic_dir(run.stage("pruned")) as folder:
            save_model(model, folder, description["timm_name"], description["create_kwargs"])
            report.write(folder / PRUNE_REPORT_FILE)
            extra = {"prune_seconds": round(time.perf_counter() - start, 1)}
            evaluate_stage("pruned", model, data, folder, request, reporter, extra)
        record_stage(run, "pruned", time.perf_counter() - start)

    world.on_main(publish, share=False)


def _finetuned_stage(run: Run, data: RunData, request: PruneRequest, reporter: Reporter) -> None:
    start = time.perf_counter()
    world = current()
    if not request.epochs:  # nothing to train: the pruned model, its metrics and predictions are the result
        world.on_main(lambda: _copy_pruned(run, start), share=False)
        return
    model = load_model(run.stage("pruned"))
    description = load_description(run.stage("pruned"))
    teacher = teacher_model(run, request)
    distillation = (
        {"teacher": "baseline", "weight": request.distill_weight, "temperature": request.distill_temperature}
        | ({"mixup_alpha": request.distill_mixup} if request.distill_mixup else {})
        | ({"token_relations_weight": request.distill_tokens} if request.distill_tokens else {})
        if teacher is not None
        else None
    )
    world.on_main(lambda: _record_distillation(run, request, reporter, distillation), share=False)
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
        average_from=request.average_from,
    )

    def publish() -> None:
        with atomic_dir(run.stage("finetuned")) as folder:
            save_model(model, folder, description["timm_name"], description["create_kwargs"])
            extra = {"epochs": request.epochs, "history": history, "distillation": distillation}
            if request.average_from is not None:
                extra["weights_averaged_from"] = request.average_from
            evaluate_stage("finetuned", model, data, folder, request, reporter, extra)
        record_stage(run, "finetuned", time.perf_counter() - start)

    world.on_main(publish, share=False)


def _copy_pruned(run: Run, start: float) -> None:
    with atomic_dir(run.stage("finetuned")) as folder:
        shutil.copytree(run.stage("pruned"), folder, dirs_exist_ok=True)
    record_stage(run, "finetuned", time.perf_counter() - start)


def _record_distillation(
    run: Run, request: PruneRequest, reporter: Reporter, distillation: dict[str, Any] | None
) -> None:
    run.update_manifest(distillation=distillation)
    if distillation is not None:
        reporter.info(
            f"fine-tune: distilling from the baseline (weight {request.distill_weight:g}, "
            f"temperature {request.distill_temperature:g}"
            + (f", mixup alpha {request.distill_mixup:g}" if request.distill_mixup else "")
            + (f", token relations {request.distill_tokens:g}" if request.distill_tokens else "")
            + ")"
        )


def resume_prune(workspace: Workspace, run_name: str | None = None, reporter: Reporter | None = None) -> Run:
    """Continue an interrupted run with the options it was started with."""
    reporter = reporter or Reporter()
    world = current()
    run = world.main_first(lambda: workspace.get_run(run_name))
    world.on_main(lambda: _check_free(run), share=False)  # refused at once, naming the process, while one writes it
    reporter.info(f"resuming run {run.name}")
    return _prune(PruneRequest.from_json(run.manifest()["request"]), workspace, run, None, reporter)


def _check_free(run: Run) -> None:
    with run.writing("prune --resume"):
        pass


def run_prune(
    request: PruneRequest, workspace: Workspace, *, run_name: str | None = None, reporter: Reporter | None = None
) -> Run:
    """A new run: baseline, pruned and fine-tuned stages, each with its held-out metrics.

    Under torchrun every process calls this: they train together, rank 0 alone prunes, evaluates and writes.
    """
    return _prune(request, workspace, None, run_name, reporter or Reporter())


def _validate(request: PruneRequest) -> ModelSpec:
    spec = request.validate()
    current().per_rank_batch(request.batch_size)  # under torchrun: the global batch must split evenly
    return spec


def _prune(
    request: PruneRequest, workspace: Workspace, run: Run | None, run_name: str | None, reporter: Reporter
) -> Run:
    world = current()
    spec = world.main_first(lambda: _validate(request))
    world.on_main(workspace.ensure_writable, share=False)
    data_root = world.on_main(lambda: resolve_data_root(request.data, reporter))
    dataset = world.on_main(lambda: load_dataset(data_root, reporter, classes_from=request.classes_from))
    split = world.main_first(
        lambda: leave_one_domain_out(dataset, request.target_domain, request.val_fraction, request.seed)
    )
    data = RunData(dataset, split)
    # What is left to make, decided once, by rank 0: a process that looked for itself could look after rank 0 has run
    # ahead and written a stage (broadcasts do not wait for their receivers), skip it, and pair its broadcasts with
    # the wrong calls.
    resumed = run
    missing = list(STAGES)
    if resumed is not None:
        missing = world.on_main(lambda: [stage for stage in STAGES if not resumed.has_stage(stage)])
    initial = None
    if "baseline" in missing:
        # Load weights before creating the run, so a bad checkpoint leaves nothing behind.
        initial = world.main_first(lambda: _initial_model(spec, len(dataset.classes), request))
    goal = None  # before any training: a table measured elsewhere is refused at once, a missing one measured now
    if request.amount().needs_latency_table and "pruned" in missing:
        goal = world.on_main(lambda: latency_goal(request, spec, workspace.root, reporter), share=False)
    with contextlib.ExitStack() as lock:  # rank 0 holds the run's lock while the run is written
        if run is None:
            run = world.on_main(lambda: _create_run(request, spec, data_root, data, workspace, run_name, reporter))
            world.on_main(lambda: lock.enter_context(run.writing("prune")), share=False)
        else:
            existing = run
            commands = existing.manifest()["commands"] + [" ".join(sys.argv)]
            world.on_main(lambda: lock.enter_context(existing.writing("prune --resume")), share=False)
            world.on_main(lambda: existing.update_manifest(status="running", commands=commands), share=False)
        if "baseline" in missing:
            _baseline_stage(run, initial, spec, data, request, workspace, reporter)
        if "pruned" in missing:
            _pruned_stage(run, spec, data, request, reporter, goal)
        if "finetuned" in missing:
            _finetuned_stage(run, data, request, reporter)
        world.on_main(lambda: _finish(run, workspace), share=False)
    return run


def _create_run(
    request: PruneRequest,
    spec: ModelSpec,
    data_root: Path,
    data: RunData,
    workspace: Workspace,
    run_name: str | None,
    reporter: Reporter,
) -> Run:
    if request.baseline_run:
        _check_baseline_run(workspace.get_run(request.baseline_run), spec, data.dataset)
    manifest = _new_manifest(request, spec, data_root, data.dataset, data.split)
    run = workspace.create_run(run_name or request.default_run_name(), manifest)
    reporter.info(f"run {run.name} in {workspace.root}")
    return run


def _finish(run: Run, workspace: Workspace) -> None:
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
