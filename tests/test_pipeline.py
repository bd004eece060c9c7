"""The run directory (run.json, stages, export, engines, bench), built by prune -> export -> bench on the tiny run."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from edgeprune.data.loaders import ImageDataset, data_config, eval_transform
from edgeprune.errors import EdgepruneError
from edgeprune.export.quantize import image_digest
from edgeprune.export.runners import OrtRunner
from edgeprune.models.artifact import load_model
from edgeprune.pipeline.bench import BenchRequest, run_bench
from edgeprune.pipeline.context import RunData
from edgeprune.pipeline.export import ExportRequest, run_export
from edgeprune.pipeline.prune import resume_prune, run_prune
from edgeprune.profiles import load_profile
from edgeprune.progress import Reporter
from edgeprune.workspace import Run, Workspace, file_sha256, read_json
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


def _split(run: Run):
    return RunData.from_manifest(run.manifest(), Reporter()).split


def _images(run: Run, samples) -> tuple[torch.Tensor, np.ndarray]:
    """`samples` preprocessed as the run's models take them (one batch), and their labels."""
    dataset = ImageDataset(samples, eval_transform(data_config(load_model(run.stage("finetuned")))))
    items = [dataset[i] for i in range(len(dataset))]
    return torch.stack([x for x, _ in items]), np.array([y for _, y in items])


@torch.no_grad()
def _torch_top1(run: Run, stage: str, images: torch.Tensor) -> np.ndarray:
    return load_model(run.stage(stage)).eval()(images).argmax(1).numpy()


def _bench(workspace: Workspace, run: Run, request: BenchRequest) -> dict:
    """Bench, and return the report as saved (bench/<target>-<domain>.json)."""
    run_bench(workspace, request, run.name)
    return read_json(run.stage("bench") / f"{request.target or 'ort-cpu'}-{request.domain or 'sketch'}.json")


def _check_recorded_accuracy(run: Run, report: dict, engine: str, baseline_engine: str) -> None:
    """Every accuracy and agreement of a held-out bench report, recomputed here from the models and engines."""
    images, labels = _images(run, _split(run).test)
    preds = {
        "baseline": _torch_top1(run, "baseline", images),
        "pruned_torch": _torch_top1(run, "finetuned", images),
        "engine": OrtRunner(run.dir / engine).run(images.numpy()).argmax(1),
        "baseline_engine": OrtRunner(run.dir / baseline_engine).run(images.numpy()).argmax(1),
    }
    assert report["images"] == len(labels) == 42
    # Agreement and accuracy of a constant predictor would measure nothing: the run's models vary their answers.
    assert min(len(set(p.tolist())) for p in preds.values()) >= 3, preds
    for name, top1 in preds.items():
        assert report["accuracy"][name] == pytest.approx((top1 == labels).sum() / len(labels), abs=1e-12), name
    assert report["agreement"] == pytest.approx((preds["engine"] == preds["pruned_torch"]).mean(), abs=1e-12)
    assert report["baseline_agreement"] == pytest.approx(
        (preds["baseline_engine"] == preds["baseline"]).mean(), abs=1e-12
    )


def test_run_directory_layout(finished_run) -> None:
    workspace, run = finished_run
    manifest = run.manifest()
    assert manifest["status"] == "complete"
    assert manifest["data"]["target_domain"] == "sketch"
    assert manifest["split"]["test"] == 42
    assert set(manifest["stages"]) == {"baseline", "pruned", "finetuned"}
    images, labels = _images(run, _split(run).test)
    for stage in ("baseline", "pruned", "finetuned"):
        assert (run.stage(stage) / "model.safetensors").exists()
        metrics = read_json(run.stage(stage) / "metrics.json")
        # The held-out accuracy is that of the stage's saved model on the 42 sketches, recomputed here.
        predicted = _torch_top1(run, stage, images)
        correct = (predicted == labels).sum()
        assert metrics["held_out_domain"] == "sketch"
        assert metrics["held_out_accuracy"] == pytest.approx(correct / len(labels), abs=1e-12), stage
        # chance level and how the predictions spread over the classes (a near-constant classifier is flagged)
        top = np.bincount(predicted, minlength=7)
        assert metrics["chance_accuracy"] == pytest.approx(1 / 7)
        assert metrics["held_out_spread"]["top_share"] == pytest.approx(top.max() / len(labels))
        assert metrics["held_out_spread"]["classes_predicted"] == int((top > 0).sum())
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


def test_bench_report(run_copy) -> None:
    workspace, run = run_copy
    _, returned = run_bench(workspace, BenchRequest(iterations=5, warmup=1), run.name)
    report = json.loads((run.stage("bench") / "ort-cpu-sketch.json").read_text())
    assert set(report) >= BENCH_KEYS
    assert set(report["latency_ms"]) >= {"p50", "p90", "p99", "mean"}
    assert report["agreement"] >= 0.99 and report["gate"]["passed"]
    _check_recorded_accuracy(run, report, "engines/ort-cpu/model.onnx", "engines/ort-cpu/baseline.onnx")
    assert report["speedup"] == pytest.approx(report["baseline_latency_ms"]["p50"] / report["latency_ms"]["p50"])
    assert report["macs"]["pruned"] < report["macs"]["baseline"]
    assert report["domain"] == "sketch" and not report["domain_seen_in_training"]
    returned = returned.to_json() if hasattr(returned, "to_json") else returned  # a typed report, or its dict
    assert returned["accuracy"] == report["accuracy"] and returned["gate"] == report["gate"]
    assert "| MACs / image |" in (run.stage("bench") / "report.md").read_text()
    breakdown = report["breakdown"]  # onnxruntime's profiler on both engines, per part and per op type
    parts = {row["name"]: row for row in breakdown["by_part"]}
    assert {"embedding", "head", "block 0 attention", "block 0 MLP"} <= set(parts)
    assert all(row["baseline_ms"] > 0 for row in parts.values() if row["name"] != "other")
    mlp = parts["block 0 MLP"]
    assert mlp["pruned_macs"] < mlp["baseline_macs"]
    ops = {row["name"]: row for row in breakdown["by_op"]}
    assert "MatMul" in ops and ({"Softmax", "Attention"} & set(ops))  # attention fused or not (build.json)
    chosen = read_json(run.stage("engines") / "ort-cpu" / "build.json")["cpu_graph"]
    for engine, column in (("model", "pruned_ms"), ("baseline", "baseline_ms")):  # each engine made its own choice
        fused_time = ops.get("Attention", {}).get(column, 0.0)
        assert (fused_time > 0) == (chosen[engine]["chosen"] == "fused")
    assert "## Where the time goes" in (run.stage("bench") / "report.md").read_text()
    assert report["chance_accuracy"] == pytest.approx(1 / 7) and set(report["prediction_spread"]) == {
        "baseline", "pruned_torch", "baseline_engine", "engine"
    }  # fmt: skip
    assert "| chance level (1/7) | 0.1429 | 0.1429 |" in (run.stage("bench") / "report.md").read_text()


def test_bench_on_a_source_domain_says_so(run_copy) -> None:
    workspace, run = run_copy
    report = _bench(workspace, run, BenchRequest(domain="photo", iterations=2, warmup=0, max_images=10))
    assert report["domain_seen_in_training"] and report["images"] == 10


def test_failed_gate_is_reported(run_copy) -> None:
    workspace, run = run_copy
    report = _bench(workspace, run, BenchRequest(iterations=2, warmup=0, max_drop=-1.0))
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
    with pytest.raises(EdgepruneError, match="was interrupted"):
        run_export(workspace, ExportRequest(), "r")
    resumed = resume_prune(workspace, "r")
    assert resumed.manifest()["status"] == "complete"
    assert resumed.manifest()["stages"]["baseline"]["model_sha256"] == baseline_hash
    assert resumed.has_stage("finetuned")


def test_baseline_is_reused_from_another_run(run_copy, builtin_root) -> None:
    workspace, run = run_copy
    reuse = run_prune(
        tiny_request(builtin_root, metric="random", baseline_run=run.name, epochs=0), workspace, run_name="reuse"
    )
    assert (
        reuse.manifest()["stages"]["baseline"]["model_sha256"] == run.manifest()["stages"]["baseline"]["model_sha256"]
    )
    assert reuse.manifest()["stages"]["baseline"]["reused_from"] == run.name
    assert read_json(reuse.stage("baseline") / "metrics.json") == read_json(run.stage("baseline") / "metrics.json")
    assert read_json(reuse.stage("pruned") / "prune_report.json")["metric"] == "random"
    assert workspace.latest_name() == "reuse"


def test_int8_engine_is_calibrated_on_sources_and_benchmarked(run_copy) -> None:
    workspace, run = run_copy
    run_export(workspace, ExportRequest(target="ort-cpu-int8", profile="cpu-x86"), run.name)
    build = read_json(run.stage("engines") / "ort-cpu-int8" / "build.json")
    assert build["profile"] == "cpu-x86" and set(build["quantization"]) == {"model", "baseline"}

    # Calibrated on source images only, judged by the images the quantizer actually read: every digest it
    # recorded is that of a source-domain training image, none that of a held-out sketch.
    split = _split(run)
    domain_of = {  # each training image's digest -> its domain (the training images preprocessed once)
        image_digest(x): path.parent.parent.name
        for x, (path, _) in zip(_images(run, split.train)[0], split.train, strict=True)
    }
    digests = {"train": set(domain_of), "held_out": {image_digest(x) for x in _images(run, split.test)[0]}}
    for name, quantization in build["quantization"].items():
        # Static and dynamic INT8 were both built and timed; the one kept reached the guard's agreement on source
        # validation images (or agreed best).
        assert set(quantization["candidates"]) == {"static", "dynamic"}, name
        assert quantization["guard_images"] == build["calibration"]["guard_images"] > 0, name
        chosen = quantization["candidates"][quantization["scheme"]]
        assert chosen["reached_target"] or "no scheme reached" in quantization["why"], name
        used = quantization["candidates"]["static"]["calibration_sha256"]
        assert len(used) == build["calibration"]["images"] > 0, name
        assert set(used) <= digests["train"] and not set(used) & digests["held_out"], name
        # build.json names the domains of the images drawn, not the run's source list
        assert build["calibration"]["domains"] == sorted({domain_of[d] for d in used}), name
        # INT8 agrees with fp32 on the held-out images, on every check image. The tiny model's logit margins are
        # small and INT8's rounding differs by CPU (AVX2 or AVX512-VNNI kernels) and by the scheme the guard timed
        # fastest there: 0 to 2 of the 42 images flip, so "high" is 0.9 here; a broken quantization agrees at chance.
        fp32 = quantization["agreement_with_fp32"]
        assert fp32["samples"] == 42 and fp32["top1_agreement"] >= 0.9, (name, fp32)

    report = _bench(workspace, run, BenchRequest(target="ort-cpu-int8", profile="cpu-x86", iterations=3, warmup=1))
    _check_recorded_accuracy(run, report, "engines/ort-cpu-int8/model.onnx", "engines/ort-cpu-int8/baseline.onnx")
    assert report["agreement"] >= 0.9 and report["baseline_agreement"] >= 0.9, report  # as above
    # The speed-up over fp32 is what it says: fp32 ONNX p50 over INT8 p50, both measured in this report.
    assert report["speedup_over_fp32"] == pytest.approx(report["fp32_latency_ms"]["p50"] / report["latency_ms"]["p50"])
    # The gate holds the profile's thresholds, and its verdict follows from them and the report's numbers.
    gate, profile, accuracy = report["gate"], load_profile("cpu-x86"), report["accuracy"]
    assert gate["thresholds"] == {
        "min_agreement": 0.97,
        "max_engine_drop": 0.01,
        "max_baseline_drop": profile.gate.max_accuracy_drop,
        "latency_budget_ms": profile.gate.latency_budget_ms,
    }
    failures = [
        report["agreement"] < 0.97,
        accuracy["pruned_torch"] - accuracy["engine"] > 0.01,
        accuracy["baseline"] - accuracy["engine"] > profile.gate.max_accuracy_drop,
        report["latency_ms"]["p50"] > profile.gate.latency_budget_ms,
    ]
    assert gate["passed"] == (not any(failures)) and len(gate["reasons"]) == sum(failures), (gate, failures)


def test_tensorrt_target_without_tensorrt_writes_a_bundle(run_copy) -> None:
    workspace, run = run_copy
    run_export(workspace, ExportRequest(target="trt-fp16", profile="jetson-orin-nano"), run.name)
    build = read_json(run.stage("engines") / "trt-fp16" / "build.json")
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


def test_baseline_run_must_hold_the_same_model(run_copy, builtin_root) -> None:
    workspace, run = run_copy
    with pytest.raises(EdgepruneError, match="not the deit_tiny_patch16_224"):
        run_prune(tiny_request(builtin_root, model="deit-micro", baseline_run=run.name), workspace, run_name="x")
    assert "x" not in workspace.list_runs()


def test_bench_finds_moved_data_with_data_option(run_copy, builtin_root, tmp_path) -> None:
    workspace, run = run_copy
    moved = tmp_path / "moved"
    shutil.copytree(builtin_root, moved)
    report = _bench(workspace, run, BenchRequest(iterations=2, warmup=0, data=moved))
    assert report["images"] == 42 and report["gate"]["passed"]


def test_iterative_pruning_with_distillation(run_copy, builtin_root) -> None:
    workspace, run = run_copy
    request = tiny_request(
        builtin_root, baseline_run=run.name, target_macs=0.5, steps=2, recovery_steps=1, distill=True
    )
    steps = run_prune(request, workspace, run_name="steps")
    report = read_json(steps.stage("pruned") / "prune_report.json")
    assert len(report["steps"]) == 2 and abs(report["achieved"]["macs_kept"] / 0.5 - 1) <= 0.03
    assert report["steps"][0]["achieved"]["macs_kept"] > report["achieved"]["macs_kept"]
    assert steps.manifest()["distillation"] == {"teacher": "baseline", "weight": 0.5, "temperature": 2.0}
    assert read_json(steps.stage("finetuned") / "metrics.json")["distillation"]["teacher"] == "baseline"
    plain = run_prune(tiny_request(builtin_root, baseline_run=run.name, distill=False), workspace, run_name="plain")
    assert plain.manifest()["distillation"] is None
    # By default a run whose baseline was fine-tuned distils from it; one whose baseline was not trained does not.
    # (Here with the token-relation term too: hooked on a timm model's last block.)
    default = run_prune(
        tiny_request(builtin_root, baseline_run=run.name, distill_tokens=1.0), workspace, run_name="default"
    )
    assert default.manifest()["distillation"] == {
        "teacher": "baseline",
        "weight": 0.5,
        "temperature": 2.0,
        "token_relations_weight": 1.0,
    }
    untrained = tiny_request(builtin_root, baseline_epochs=0, max_steps_per_epoch=1)
    assert run_prune(untrained, workspace, run_name="untrained").manifest()["distillation"] is None
