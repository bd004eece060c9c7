import re
from pathlib import Path

import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.engines import BUILDERS, RUNNERS
from edgeprune.profiles import TENSORRT_TARGETS
from edgeprune.targets import TARGETS, resolve_target


def test_every_target_has_a_builder_and_a_runner() -> None:
    for target in TARGETS.values():
        assert target.builder in BUILDERS and target.runner in RUNNERS, target.name
        assert target.needs_calibration == (target.precision == "int8")


def test_traits_say_what_each_target_needs() -> None:
    assert set(TENSORRT_TARGETS) == {"ort-trt", "trt-fp32", "trt-fp16", "trt-int8"}
    assert [n for n, t in TARGETS.items() if not t.needs_gpu] == ["onnx", "ort-cpu", "ort-cpu-fp16", "ort-cpu-int8"]
    assert [n for n, t in TARGETS.items() if t.compare_with_fp32_on_cpu] == ["ort-cpu-fp16", "ort-cpu-int8"]
    with pytest.raises(EdgepruneError, match="choose one of onnx, ort-cpu"):
        resolve_target("tensorrt")


def test_no_code_outside_the_registry_branches_on_a_target_name() -> None:
    names = "|".join(re.escape(n) for n in TARGETS)
    pattern = re.compile(rf"(==|!=|\bin\b)\s*\(?[^#\n]*[\"'](?:{names})[\"']|\.name\s*(==|!=|in)\b")
    # ... nor on a precision or backend string: code asks a trait (float16, needs_calibration, tensorrt_engine, ...)
    precision = re.compile(r"(==|!=|\bin\b)\s*\(?[^#\n]*[\"'](fp32|fp16|int8|tensorrt|onnxruntime)[\"']")
    package = Path(__file__).resolve().parents[1] / "edgeprune"
    offenders = [
        f"{path.relative_to(package)}:{i}: {line.strip()}"
        for path in package.rglob("*.py")
        if path.name != "targets.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if (pattern.search(line) and "target" in line) or precision.search(line)
    ]
    assert offenders == []


def test_a_target_added_as_one_builder_and_one_entry_runs_end_to_end(run_copy) -> None:
    """ort-cpu-fp16 is `export/ort_fp16.py` plus its entries in TARGETS and BUILDERS: export, bench and the gate
    work for it with no other change."""
    from edgeprune.export.compare import TOLERANCES
    from edgeprune.export.fp16 import is_float16_model
    from edgeprune.pipeline.bench import BenchRequest, run_bench
    from edgeprune.pipeline.export import ExportRequest, run_export

    workspace, run = run_copy
    _, _, build = run_export(workspace, ExportRequest(target="ort-cpu-fp16", parity_images=16), run.name)
    fp16 = TOLERANCES["fp16"].min_top1_agreement
    for name in ("model", "baseline"):
        assert is_float16_model(run.dir / build.engines[name].path)
        # float16 moves the logits by rounding only (about 3 significant digits, on logits of order 10): near-ties
        # among the 42 sketches of this barely trained tiny model may flip (1 or 2 seen, depending on its training)
        agreement = build.float16[name]["agreement_with_fp32"]
        assert agreement["samples"] == 42, agreement
        assert 0 < agreement["mean_abs_diff"] < agreement["max_abs_diff"] < 0.5, agreement
        assert agreement["top1_agreement"] >= 0.9, agreement
    assert [(name, what) for name, what, _ in build.agreements()] == [("model", "float16"), ("baseline", "float16")]
    _, report = run_bench(workspace, BenchRequest(target="ort-cpu-fp16", iterations=3, warmup=1), run.name)
    assert report.gate.thresholds["min_agreement"] == fp16
    assert (report.agreement < fp16) == any("agreement" in reason for reason in report.gate.reasons), report.gate
    assert report.speedup_over_fp32 == pytest.approx(report.fp32_latency_ms["p50"] / report.latency_ms["p50"])
    assert run.bench_report("ort-cpu-fp16", report.domain).to_json() == report.to_json()
