"""`edgeprune export`: the fine-tuned pruned model (and its unpruned baseline) to ONNX, then to a target engine."""

from __future__ import annotations

import platform

import onnxruntime as ort
import torch

from edgeprune.data.loaders import calibration_samples, data_config, eval_transform, image_batches
from edgeprune.errors import EdgepruneError
from edgeprune.export.compare import TOLERANCES
from edgeprune.export.engines import build_target
from edgeprune.export.onnx_export import export_onnx, parity
from edgeprune.export.tensorrt import tensorrt_version
from edgeprune.hardware import cpu_isa, describe_device
from edgeprune.models.artifact import WEIGHTS_FILE, load_model
from edgeprune.pipeline.context import RunData, complete_run, eval_loader
from edgeprune.profiles import Profile, load_profile, profile_to_toml
from edgeprune.progress import Reporter
from edgeprune.requests import ExportRequest
from edgeprune.results import BuildRecord, ParityReport
from edgeprune.targets import DEFAULT_TARGET, Target, resolve_target
from edgeprune.workspace import (
    BUILD_FILE,
    PARITY_FILE,
    Run,
    Workspace,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    read_json,
    utc_now,
)

# Exported models are pure fp32 graphs: torch and onnxruntime logits differ by float rounding only.
EXPORTED = {"model": "finetuned", "baseline": "baseline"}
PARITY = TOLERANCES["parity"]
CALIBRATION_BATCHES = 4  # x 32 source-domain images for INT8
GUARD_IMAGES = 128  # source validation images on which INT8 must agree with fp32


def _parity_images(model: torch.nn.Module, data: RunData, count: int) -> torch.Tensor:
    samples = data.split.test[:: max(1, len(data.split.test) // count)][:count]
    return torch.cat([x for x, _ in eval_loader(model, samples)])


def _export_is_current(run: Run, opset: int) -> bool:
    record = run.stage("export") / "export.json"
    if not record.exists():
        return False
    saved = read_json(record)
    return saved.get("opset") == opset and all(
        saved["sources"].get(name) == file_sha256(run.stage(stage) / WEIGHTS_FILE) for name, stage in EXPORTED.items()
    )


def export_stage(run: Run, data: RunData, request: ExportRequest, reporter: Reporter) -> ParityReport:
    """export/model.onnx (pruned, fine-tuned) and export/baseline.onnx, each checked for parity with torch."""
    if not request.force and _export_is_current(run, request.opset):
        reporter.info("export: ONNX files are up to date with the run's models (use --force to redo)")
        return _checked(run, run.parity())
    comparisons, sources = {}, {}
    with atomic_dir(run.stage("export")) as folder:
        for name, stage in EXPORTED.items():
            model = load_model(run.stage(stage))
            onnx_path = folder / f"{name}.onnx"
            with reporter.task(f"export {name}.onnx", None):
                export_onnx(model, onnx_path, request.opset)
            found = comparisons[name] = parity(onnx_path, model, _parity_images(model, data, request.parity_images))
            sources[name] = file_sha256(run.stage(stage) / WEIGHTS_FILE)
            reporter.info(
                f"export: {name}.onnx max |diff| {found.max_abs_diff:.2e}, "
                f"top-1 agreement {found.top1_agreement:.4f} on {found.samples} images"
            )
        report = ParityReport(
            tolerance={"max_abs_diff": PARITY.max_abs_diff, "top1_agreement": PARITY.min_top1_agreement},
            domain=data.split.target,
            **comparisons,
            passed=not any(c.failures(PARITY) for c in comparisons.values()),
        )
        report.write(folder / PARITY_FILE)
        atomic_write_json(
            folder / "export.json",
            {
                "opset": request.opset,
                "created": utc_now(),
                "sources": sources,
                "onnx_sha256": {n: file_sha256(folder / f"{n}.onnx") for n in EXPORTED},
            },
        )
    return _checked(run, report)


def _checked(run: Run, report: ParityReport) -> ParityReport:
    if not report.passed:
        raise EdgepruneError(
            f"ONNX parity beyond tolerance (max |diff| <= {PARITY.max_abs_diff}, agreement >= "
            f"{PARITY.min_top1_agreement}): "
            f"see {run.stage('export') / PARITY_FILE}"
        )
    return report


def default_profile(target: Target) -> Profile:
    if target.needs_gpu:
        return load_profile("server-gpu")
    return load_profile("cpu-arm64" if platform.machine().lower() in ("aarch64", "arm64") else "cpu-x86")


def warn_if_other_cpu(profile: Profile, target: Target, reporter: Reporter) -> None:
    """CPU builds choose their variants by timing them here: say so when the profile names another CPU."""
    here = cpu_isa()
    if target.onnxruntime_cpu and profile.backend.isa and profile.backend.isa != here:
        reporter.info(
            f"[yellow]warning:[/] profile {profile.name} is for {profile.backend.isa} CPUs; this one is {here}: "
            "what is timed here (fused attention or not, static or dynamic INT8) may be chosen otherwise there"
        )


def build_engines(run: Run, target: Target, profile: Profile, data: RunData, reporter: Reporter) -> BuildRecord:
    """engines/<target>/: the pruned and baseline engines (or deploy bundles) and build.json."""
    warn_if_other_cpu(profile, target, reporter)
    export_record = read_json(run.stage("export") / "export.json")
    sources = {name: run.stage("export") / f"{name}.onnx" for name in EXPORTED}
    # fp32 targets need no images; int8 needs source images to calibrate, int8 and fp16 held-out ones to check.
    model = load_model(run.stage("finetuned")) if target.reduced_precision else None
    calibration, guard_images, calibration_domains = None, None, []
    if target.needs_calibration:  # source-domain images only: the held-out domain stays unseen
        picked = calibration_samples(data.split.train, CALIBRATION_BATCHES * 32, seed=0)
        transform = eval_transform(data_config(model))
        calibration = torch.cat([x for x, _ in image_batches(picked, transform, 32)]).numpy()
        calibration_domains = sorted({data.dataset.domain_of(s) for s in picked})
        # The guard judges on source validation images: neither calibration nor held-out ones.
        guarded = calibration_samples(data.split.val, GUARD_IMAGES, seed=0)
        guard_images = torch.cat([x for x, _ in image_batches(guarded, transform, 32)]).numpy()
    check_images = _parity_images(model, data, 128).numpy() if model is not None else None
    engine_dir = run.engine_dir(target.name)
    with atomic_dir(engine_dir) as folder:
        with reporter.task(f"build {target.name}", None):
            built = build_target(
                target,
                sources,
                export_record["sources"],
                folder,
                profile,
                calibration,
                check_images,
                engine_dir.relative_to(run.dir).as_posix(),
                guard_images,
            )
        atomic_write_text(folder / "profile.toml", profile_to_toml(profile))
        build = BuildRecord.from_json(
            {
                "target": target.name,
                "backend": target.backend,
                "backend_version": backend_version(target),
                "precision": target.precision,
                "profile": profile.name,
                "device": describe_device(),
                "created": utc_now(),
                "onnx_sha256": export_record["onnx_sha256"],
                "model_sha256": export_record["sources"],
                **(
                    {
                        "calibration": {
                            "images": len(calibration),
                            "domains": calibration_domains,
                            "guard_images": len(guard_images),
                        }
                    }
                    if calibration is not None and guard_images is not None
                    else {}
                ),
                **built,
            }
        )
        build.write(folder / BUILD_FILE)
    bundle = build.engines["model"].bundle
    if bundle is None:
        reporter.info(f"engine: {target.name} for profile {profile.name} written to {engine_dir}")
    else:  # TensorRT is not here: what was written is a bundle, to build on the device
        reporter.info(
            f"deploy bundle (not an engine: TensorRT is not installed here): {target.name} for profile "
            f"{profile.name} in {engine_dir}; on the device run `edgeprune build {run.dir / bundle}`"
        )
    return build


def backend_version(target: Target) -> str | None:
    if target.tensorrt_engine:
        return tensorrt_version()
    return ort.__version__


def run_export(
    workspace: Workspace, request: ExportRequest, run_name: str | None = None, reporter: Reporter | None = None
) -> tuple[Run, ParityReport, BuildRecord]:
    request.validate()
    reporter = reporter or Reporter()
    profile = load_profile(request.profile) if request.profile else None
    target = resolve_target(request.target or (profile.default_target if profile else DEFAULT_TARGET))
    profile = profile or default_profile(target)
    run = complete_run(workspace, run_name, reporter)
    with run.writing("export"):
        data = RunData.from_manifest(run.manifest(), reporter, request.data)
        parity_report = export_stage(run, data, request, reporter)
        build = build_engines(run, target, profile, data, reporter)
    return run, parity_report, build
