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
    assert [n for n, t in TARGETS.items() if not t.needs_gpu] == ["onnx", "ort-cpu", "ort-cpu-int8"]
    assert [n for n, t in TARGETS.items() if t.compare_with_fp32_on_cpu] == ["ort-cpu-int8"]
    with pytest.raises(EdgepruneError, match="choose one of onnx, ort-cpu"):
        resolve_target("tensorrt")


def test_no_code_outside_the_registry_branches_on_a_target_name() -> None:
    names = "|".join(re.escape(n) for n in TARGETS)
    pattern = re.compile(rf"(==|!=|\bin\b)\s*\(?[^#\n]*[\"'](?:{names})[\"']|\.name\s*(==|!=|in)\b")
    package = Path(__file__).resolve().parents[1] / "edgeprune"
    offenders = [
        f"{path.relative_to(package)}:{i}: {line.strip()}"
        for path in package.rglob("*.py")
        if path.name != "targets.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "target" in line
    ]
    assert offenders == []
