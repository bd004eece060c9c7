"""`edgeprune export`: the fine-tuned pruned model (and its unpruned baseline) to ONNX, then to a target engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnxruntime as ort
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import DEFAULT_OPSET, export_onnx, parity
from edgeprune.export.ort_engine import cpu_device, optimise_for_cpu
from edgeprune.export.targets import resolve_target
from edgeprune.models.artifact import WEIGHTS_FILE, load_model
from edgeprune.pipeline.context import RunData, eval_loader, require_complete
from edgeprune.progress import Reporter
from edgeprune.workspace import Run, Workspace, atomic_dir, atomic_write_json, file_sha256, read_json, utc_now

# Exported models are pure fp32 graphs: torch and onnxruntime logits differ by float rounding only.
MAX_ABS_DIFF = 1e-3
MIN_AGREEMENT = 0.99
EXPORTED = {"model": "finetuned", "baseline": "baseline"}


@dataclass
class ExportRequest:
    target: str = "ort-cpu"
    parity_images: int = 128
    opset: int = DEFAULT_OPSET
    force: bool = False


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


def export_stage(run: Run, request: ExportRequest, reporter: Reporter) -> dict[str, Any]:
    """export/model.onnx (pruned, fine-tuned) and export/baseline.onnx, each checked for parity with torch."""
    if not request.force and _export_is_current(run, request.opset):
        reporter.info("export: ONNX files are up to date with the run's models (use --force to redo)")
        return read_json(run.stage("export") / "parity.json")
    data = RunData.from_manifest(run.manifest(), reporter)
    report: dict[str, Any] = {
        "tolerance": {"max_abs_diff": MAX_ABS_DIFF, "top1_agreement": MIN_AGREEMENT},
        "domain": data.split.target,
    }
    sources = {}
    with atomic_dir(run.stage("export")) as folder:
        for name, stage in EXPORTED.items():
            model = load_model(run.stage(stage))
            onnx_path = folder / f"{name}.onnx"
            with reporter.task(f"export {name}.onnx", None):
                export_onnx(model, onnx_path, request.opset)
            report[name] = parity(onnx_path, model, _parity_images(model, data, request.parity_images))
            sources[name] = file_sha256(run.stage(stage) / WEIGHTS_FILE)
            reporter.info(
                f"export: {name}.onnx max |diff| {report[name]['max_abs_diff']:.2e}, "
                f"top-1 agreement {report[name]['top1_agreement']:.4f} on {report[name]['samples']} images"
            )
        report["passed"] = all(
            report[n]["max_abs_diff"] <= MAX_ABS_DIFF and report[n]["top1_agreement"] >= MIN_AGREEMENT for n in EXPORTED
        )
        atomic_write_json(folder / "parity.json", report)
        atomic_write_json(
            folder / "export.json",
            {
                "opset": request.opset,
                "created": utc_now(),
                "sources": sources,
                "onnx_sha256": {n: file_sha256(folder / f"{n}.onnx") for n in EXPORTED},
            },
        )
    if not report["passed"]:
        raise EdgepruneError(
            f"ONNX parity beyond tolerance (max |diff| <= {MAX_ABS_DIFF}, agreement >= {MIN_AGREEMENT}): "
            f"see {run.stage('export') / 'parity.json'}"
        )
    return report


def build_engine(run: Run, target_name: str, reporter: Reporter) -> dict[str, Any]:
    target = resolve_target(target_name)
    export_record = read_json(run.stage("export") / "export.json")
    build: dict[str, Any] = {
        "target": target.name,
        "backend": target.backend,
        "backend_version": ort.__version__,
        "precision": target.precision,
        "provider": "CPUExecutionProvider",
        "device": cpu_device(),
        "created": utc_now(),
        "onnx_sha256": export_record["onnx_sha256"],
        "model_sha256": export_record["sources"],
        "engines": {},
    }
    build["optimization"] = "all (at load)" if target.name == "onnx" else "extended (offline) + all (at load)"
    with atomic_dir(run.stage("engines") / target.name) as folder:
        for name in EXPORTED:
            source = run.stage("export") / f"{name}.onnx"
            if target.name == "onnx":
                engine_file, run_relative = source, f"export/{name}.onnx"
            else:
                engine_file, run_relative = folder / f"{name}.onnx", f"engines/{target.name}/{name}.onnx"
                with reporter.task(f"build {target.name} {name}", None):
                    optimise_for_cpu(source, engine_file)
            build["engines"][name] = {"path": run_relative, "sha256": file_sha256(engine_file)}
        atomic_write_json(folder / "build.json", build)
    reporter.info(f"engine: {target.name} written to {run.stage('engines') / target.name}")
    return build


def run_export(
    workspace: Workspace, request: ExportRequest, run_name: str | None = None, reporter: Reporter | None = None
) -> tuple[Run, dict[str, Any], dict[str, Any]]:
    reporter = reporter or Reporter()
    resolve_target(request.target)
    run = workspace.get_run(run_name)
    require_complete(run)
    parity_report = export_stage(run, request, reporter)
    build = build_engine(run, request.target, reporter)
    return run, parity_report, build
