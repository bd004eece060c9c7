"""The typed results read back exactly what the pipeline wrote: every key, every value."""

import json

import pytest

from edgeprune.results import BenchReport, PruneReport, StageMetrics


def test_every_result_file_of_a_run_round_trips(finished_run) -> None:
    _, run = finished_run
    files = {
        run.stage("pruned") / "prune_report.json": run.prune_report(),
        run.stage("export") / "parity.json": run.parity(),
        run.build_record_path("ort-cpu"): run.build_record("ort-cpu"),
        **{run.stage(s) / "metrics.json": run.metrics(s) for s in ("baseline", "pruned", "finetuned")},
    }
    for path, result in files.items():
        assert result.to_json() == json.loads(path.read_text()), path
    report = run.prune_report()
    assert report.macs.kept == pytest.approx(report.achieved.macs_kept)
    assert [b.index for b in report.blocks] == list(range(len(report.blocks)))
    assert run.build_record("ort-cpu").model_sha256 == {
        "model": run.manifest()["stages"]["finetuned"]["model_sha256"],
        "baseline": run.manifest()["stages"]["baseline"]["model_sha256"],
    }


def test_reports_of_earlier_versions_still_read() -> None:
    """A prune report from before the global unit budget (no units, normalization, floors) reads with the values
    that version used, and writes back without inventing keys."""
    old = {
        "model": "deit_tiny_patch16_224", "family": "vit", "metric": "hessian", "ratio": 0.5,
        "requested": {"ratio": 0.5, "target_macs": 0.62, "target_params": None}, "prune_heads": False,
        "round_to": None, "calibration_samples": 128,
        "macs": {"before": 100, "after": 62}, "params": {"before": 10, "after": 6},
        "achieved": {"macs_kept": 0.62, "params_kept": 0.6},
        "blocks": [{"index": 0, "before": {"embed_dim": 8, "heads": 2, "head_dim": 4, "mlp_hidden": 32},
                    "after": {"embed_dim": 8, "heads": 2, "head_dim": 4, "mlp_hidden": 16}}],
    }  # fmt: skip
    report = PruneReport.from_json(old)
    assert report.normalization == "mean" and not report.compensated and report.units is None
    assert report.to_json() == old


def test_a_result_missing_a_required_key_is_refused() -> None:
    with pytest.raises(ValueError, match="held_out_domain"):
        StageMetrics.from_json({"held_out_accuracy": 0.5})
    with pytest.raises(ValueError, match="latency_ms"):
        BenchReport.from_json({"run": "r", "target": "ort-cpu"})


def test_a_request_recorded_before_the_fit_compensation_resumes_with_the_mean() -> None:
    from edgeprune.requests import PruneRequest

    recorded = PruneRequest(model="deit-tiny").to_json()
    assert recorded["compensation"] == "fit"
    del recorded["compensation"]
    assert PruneRequest.from_json(recorded).prune_config().compensation == "mean"


def test_a_request_recorded_before_the_cost_exponent_resumes_with_what_auto_meant_then() -> None:
    from edgeprune.requests import PruneRequest

    recorded = PruneRequest(model="deit-tiny", metric="hessian").to_json()
    del recorded["cost_exponent"]
    assert PruneRequest.from_json(recorded).prune_config().normalization == "none"
    assert PruneRequest.from_json(PruneRequest(model="deit-tiny").to_json()).prune_config().normalization == "auto"
