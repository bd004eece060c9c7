"""The run directory (run.json, stages, export, engines, bench), built by prune -> export -> bench on the tiny run."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.export.runners import OrtRunner
from edgeprune.models.artifact import load_model
from edgeprune.pipeline.bench import BenchRequest, run_bench
from edgeprune.pipeline.export import ExportRequest, run_export
from edgeprune.pipeline.prune import resume_prune, run_prune
from edgeprune.workspace import Workspace, file_sha256, read_json
from tests.conftest import tiny_request

BENCH_KEYS = {
    "target",
    "profile",
    "domain",
    "batch",
    "accuracy",
    "agreement",
    "latency_ms",
    "throughput_ips",
    "macs",
    "params",
    "speedup",
    "gate",
}


def test_run_directory_layout(finished_run) -> None:
    workspace, run = finished_run
    manifest = run.manifest()
    assert manifest["status"] == "complete"
    assert manifest["data"]["target_domain"] == "sketch"
    assert manifest["split"]["test"] == 42
    assert set(manifest["stages"]) == {"baseline", "pruned", "finetuned"}
    for stage in ("baseline", "pruned", "finetuned"):
        assert (run.stage(stage) / "model.safetensors").exists()
        metrics = read_json(run.stage(stage) / "metrics.json")
        assert 0.0 <= metrics["held_out_accuracy"] <= 1.0
    report = read_json(run.stage("pruned") / "prune_report.json")
    assert report["macs"]["after"] < report["macs"]["before"]
    assert len(report["blocks"]) == 4
    assert not (run.dir / "checkpoints").exists()
    assert workspace.latest_name() == "tiny"


def test_onnx_export_and_parity(finished_run) -> None:
    _, run = finished_run
    onnx_path = run.stage("export") / "model.onnx"
    model = onnx.load(str(onnx_path))
    assert model.opset_import[0].version >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    parity = read_json(run.stage("export") / "parity.json")
    assert parity["passed"] and parity["model"]["top1_agreement"] >= 0.99
    assert parity["model"]["max_abs_diff"] <= 1e-3
    torch_model = load_model(run.stage("finetuned"))
    x = torch.randn(3, 3, 64, 64)
    for path in (onnx_path, run.stage("engines") / "ort-cpu" / "model.onnx"):
        got = OrtRunner(path).run(x.numpy())
        np.testing.assert_allclose(got, torch_model(x).detach().numpy(), atol=1e-4)
    build = read_json(run.stage("engines") / "ort-cpu" / "build.json")
    assert build["target"] == "ort-cpu" and set(build["engines"]) == {"model", "baseline"}


def test_bench_report(finished_run) -> None:
    workspace, run = finished_run
    _, report = run_bench(workspace, BenchRequest(iterations=5, warmup=1), run.name)
    assert set(report) >= BENCH_KEYS
    assert set(report["accuracy"]) >= {"baseline", "pruned_torch", "engine"}
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99", "mean"}
    assert report["agreement"] >= 0.99 and report["gate"]["passed"]
    assert report["macs"]["pruned"] < report["macs"]["baseline"]
    assert report["domain"] == "sketch" and not report["domain_seen_in_training"]
    saved = json.loads((run.stage("bench") / "ort-cpu-sketch.json").read_text())
    assert saved["accuracy"] == report["accuracy"]
    assert "| MACs / image |" in (run.stage("bench") / "report.md").read_text()


def test_bench_on_a_source_domain_says_so(finished_run) -> None:
    workspace, run = finished_run
    _, report = run_bench(workspace, BenchRequest(domain="photo", iterations=2, warmup=0, max_images=10), run.name)
    assert report["domain_seen_in_training"] and report["images"] == 10


def test_failed_gate_is_reported(finished_run) -> None:
    workspace, run = finished_run
    _, report = run_bench(workspace, BenchRequest(iterations=2, warmup=0, max_drop=-1.0), run.name)
    assert not report["gate"]["passed"] and "baseline" in report["gate"]["reasons"][0]


def test_bench_refuses_a_stale_engine(finished_run, tmp_path) -> None:
    workspace, run = finished_run
    copy = Workspace(tmp_path)
    shutil.copytree(run.dir, tmp_path / "copy")
    engine = tmp_path / "copy" / "engines" / "ort-cpu" / "model.onnx"
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(EdgepruneError, match="no longer matches its build record"):
        run_bench(copy, BenchRequest(iterations=2), "copy")


def test_resume_finishes_an_interrupted_run(builtin_root, tmp_path) -> None:
    workspace = Workspace(tmp_path)
    run = run_prune(tiny_request(builtin_root, epochs=0), workspace, run_name="r")
    baseline_hash = run.manifest()["stages"]["baseline"]["model_sha256"]
    shutil.rmtree(run.stage("finetuned"))
    run.update_manifest(status="running")
    with pytest.raises(EdgepruneError, match="incomplete"):
        run_export(workspace, ExportRequest(), "r")
    resumed = resume_prune(workspace, "r")
    assert resumed.manifest()["status"] == "complete"
    assert resumed.manifest()["stages"]["baseline"]["model_sha256"] == baseline_hash
    assert resumed.has_stage("finetuned")


def test_baseline_is_reused_from_another_run(finished_run, builtin_root) -> None:
    workspace, run = finished_run
    reuse = run_prune(
        tiny_request(builtin_root, metric="random", baseline_run=run.name, epochs=0), workspace, run_name="reuse"
    )
    assert (
        reuse.manifest()["stages"]["baseline"]["model_sha256"] == run.manifest()["stages"]["baseline"]["model_sha256"]
    )
    assert reuse.manifest()["stages"]["baseline"]["reused_from"] == run.name
    assert read_json(reuse.stage("baseline") / "metrics.json") == read_json(run.stage("baseline") / "metrics.json")
    assert read_json(reuse.stage("pruned") / "prune_report.json")["metric"] == "random"
    workspace.set_latest(run)


def test_int8_engine_is_calibrated_on_sources_and_benchmarked(finished_run) -> None:
    workspace, run = finished_run
    _, _, build = run_export(workspace, ExportRequest(target="ort-cpu-int8", profile="cpu-x86"), run.name)
    assert build["profile"] == "cpu-x86" and "sketch" not in build["calibration"]["domains"]
    for name in ("model", "baseline"):
        assert build["quantization"][name]["agreement_with_fp32"]["samples"] > 0
    _, report = run_bench(workspace, BenchRequest(target="ort-cpu-int8", iterations=3, warmup=1), run.name)
    assert report["speedup_over_fp32"] > 0 and report["gate"]["thresholds"]["min_agreement"] == 0.97


def test_tensorrt_target_without_tensorrt_writes_a_bundle(finished_run) -> None:
    workspace, run = finished_run
    _, _, build = run_export(workspace, ExportRequest(target="trt-fp16", profile="jetson-orin-nano"), run.name)
    bundle = run.dir / build["engines"]["model"]["bundle"]
    assert {"model.onnx", "model.fp16.onnx", "profile.toml", "build.sh", "manifest.json"} <= {
        p.name for p in bundle.iterdir()
    }
    assert build["bundles"]["model"]["fp16_agreement_with_fp32"]["samples"] > 0
    assert "--fp16" in (bundle / "build.sh").read_text()
    # The bundle traces back to the weights it was exported from.
    manifest = read_json(bundle / "manifest.json")
    assert manifest["model_sha256"] == run.manifest()["stages"]["finetuned"]["model_sha256"]
    assert manifest["model_sha256"] == file_sha256(run.stage("finetuned") / "model.safetensors")
    with pytest.raises(EdgepruneError, match="deploy bundles not built yet"):
        run_bench(workspace, BenchRequest(target="trt-fp16"), run.name)


def test_fixed_shape_engines_get_padded_batches() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    from edgeprune.bench.accuracy import runner_predictions

    seen = []

    def engine(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return np.eye(3, dtype=np.float32)[batch[:, 0].astype(int)]

    loader = DataLoader(TensorDataset(torch.tensor([[0.0], [1.0], [2.0], [1.0], [0.0]]), torch.zeros(5)), batch_size=4)
    preds = runner_predictions(engine, loader, fixed_batch=4)
    assert preds.tolist() == [0, 1, 2, 1, 0] and seen == [4, 4]


def test_failed_parity_is_not_forgotten(finished_run, tmp_path) -> None:
    _, run = finished_run
    shutil.copytree(run.dir, tmp_path / "copy")
    parity_file = tmp_path / "copy" / "export" / "parity.json"
    parity_file.write_text(parity_file.read_text().replace('"passed": true', '"passed": false'))
    with pytest.raises(EdgepruneError, match="parity beyond tolerance"):
        run_export(Workspace(tmp_path), ExportRequest(), "copy")


def test_baseline_run_must_hold_the_same_model(finished_run, builtin_root) -> None:
    workspace, run = finished_run
    with pytest.raises(EdgepruneError, match="not the deit_tiny_patch16_224"):
        run_prune(tiny_request(builtin_root, model="deit-micro", baseline_run=run.name), workspace, run_name="x")
    assert "x" not in workspace.list_runs()


def test_bench_finds_moved_data_with_data_option(finished_run, builtin_root, tmp_path) -> None:
    workspace, run = finished_run
    moved = tmp_path / "moved"
    shutil.copytree(builtin_root, moved)
    _, report = run_bench(workspace, BenchRequest(iterations=2, warmup=0, data=moved), run.name)
    assert report["images"] == 42 and report["gate"]["passed"]


def test_iterative_pruning_with_distillation(finished_run, builtin_root) -> None:
    workspace, run = finished_run
    request = tiny_request(
        builtin_root, baseline_run=run.name, target_macs=0.5, steps=2, recovery_steps=1, distill=True
    )
    steps = run_prune(request, workspace, run_name="steps")
    report = read_json(steps.stage("pruned") / "prune_report.json")
    assert len(report["steps"]) == 2 and abs(report["achieved"]["macs_kept"] / 0.5 - 1) <= 0.03
    assert report["steps"][0]["achieved"]["macs_kept"] > report["achieved"]["macs_kept"]
    assert steps.manifest()["distillation"] == {"teacher": "baseline", "weight": 0.5, "temperature": 2.0}
    assert read_json(steps.stage("finetuned") / "metrics.json")["distillation"]["teacher"] == "baseline"
    plain = run_prune(tiny_request(builtin_root, baseline_run=run.name), workspace, run_name="plain")
    assert plain.manifest()["distillation"] is None
    workspace.set_latest(run)
