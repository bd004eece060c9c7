"""`bench` across targets: one row per engine built for the run, and one failing target does not stop the others."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeprune.cli import EXIT_SOME_FAILED, app
from edgeprune.pipeline.bench import built_targets, run_bench_targets
from edgeprune.pipeline.export import run_export
from edgeprune.requests import BenchRequest, ExportRequest

QUICK = BenchRequest(warmup=0, iterations=2, max_images=16)


def test_all_targets_give_one_row_each_and_a_missing_engine_fails_its_row_only(run_copy) -> None:
    workspace, run = run_copy
    run_export(workspace, ExportRequest(target="ort-cpu-fp16", parity_images=16), run.name)
    assert built_targets(run) == ["ort-cpu", "ort-cpu-fp16"]

    _, table = run_bench_targets(workspace, QUICK, ["all"], run.name)
    assert [(r.target, r.status) for r in table.rows] == [("ort-cpu", "ok"), ("ort-cpu-fp16", "ok")]
    for row in table.rows:
        assert row.size_mb and row.size_mb > 0 and row.p50_ms and row.p90_ms and row.fps and row.speedup
        assert 0.0 <= row.accuracy <= 1.0 and 0.0 <= row.agreement <= 1.0 and row.gate_passed is not None
    fp32, fp16 = table.rows
    assert fp16.size_mb < fp32.size_mb  # half-precision weights

    (run.dir / run.build_record("ort-cpu-fp16").engines["model"].path).unlink()
    quick = ["--warmup", "0", "--iterations", "2", "--max-images", "16"]
    args = ["bench", "--target", "all", *quick, "--run", run.name, "-w", str(workspace.root), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_SOME_FAILED, result.output  # a failed row: exit 1, after the other rows
    table = json.loads(result.stdout)
    assert [(r["target"], r["status"]) for r in table["rows"]] == [("ort-cpu", "ok"), ("ort-cpu-fp16", "failed")]
    assert "edgeprune export --target ort-cpu-fp16" in table["rows"][1]["error"]
    assert table["domain"] == "sketch" and table["rows"][0]["p50_ms"] > 0
