import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeprune.errors import EdgepruneError
from edgeprune.profiles import (
    REPO_PROFILES_DIR,
    list_profiles,
    load_profile,
    profile_to_toml,
    read_profile_file,
    tomllib,
    version_tuple,
)

SHIPPED = {"jetson-orin-nano", "jetson-agx-orin", "server-gpu", "cpu-x86", "cpu-arm64"}

VALID = """\
name = "test-device"
description = "a test device"

[backend]
default_target = "trt-fp16"
precision = "fp16"
threads = 6

[batch]
min = 1
opt = 1
max = 4

[tensorrt]
workspace_mib = 1024
dla_core = -1
version_min = "10.3"
version_max = "11.99"

[gate]
latency_budget_ms = 20.0
max_accuracy_drop = 0.02
"""


def _write(tmp_path: Path, text: str, name: str = "test-device") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_every_shipped_profile_loads() -> None:
    profiles = {p.name: p for p in list_profiles()}
    assert set(profiles) == SHIPPED
    assert {p.stem for p in REPO_PROFILES_DIR.glob("*.toml")} == SHIPPED
    nano = profiles["jetson-orin-nano"]
    assert nano.default_target == "trt-fp16" and nano.backend.precision == "fp16"
    assert (nano.batch.min, nano.batch.opt, nano.batch.max) == (1, 1, 4)
    assert nano.tensorrt is not None and not nano.tensorrt.uses_dla
    assert nano.tensorrt.accepts("10.3.0.30") and not nano.tensorrt.accepts("11.4.1")
    assert profiles["cpu-x86"].tensorrt is None and profiles["cpu-x86"].default_target == "ort-cpu-int8"
    for profile in profiles.values():
        assert profile.gate.latency_budget_ms > 0 and 0 <= profile.gate.max_accuracy_drop < 0.1


def test_load_by_name_and_by_path_agree(tmp_path: Path) -> None:
    by_name = load_profile("server-gpu")
    assert load_profile(str(REPO_PROFILES_DIR / "server-gpu.toml")) == by_name
    assert read_profile_file(_write(tmp_path, profile_to_toml(by_name), "copy")) == by_name


def test_every_shipped_profile_round_trips_through_toml(tmp_path: Path) -> None:
    for profile in list_profiles():
        assert profile.source is not None
        text = profile_to_toml(profile)
        assert tomllib.loads(text) == tomllib.loads(profile.source.read_text())  # the same keys and values
        again = read_profile_file(_write(tmp_path, text, profile.name))
        assert again == profile and profile_to_toml(again) == text


def test_version_range_semantics(tmp_path: Path) -> None:
    trt = read_profile_file(_write(tmp_path, VALID)).tensorrt
    assert trt is not None
    assert trt.accepts("10.3") and trt.accepts("10.16.0") and trt.accepts("11.4.1.post1")
    assert not trt.accepts("10.2.9") and not trt.accepts("12.0") and not trt.accepts("8.6.1")
    assert str(trt.specifier) == "<11.100,>=10.3"
    assert trt.accepts("11.99.5rc1") and not trt.accepts("10.3rc1") and not trt.accepts("11.100.0rc1")
    whole_major = dataclasses.replace(trt, version_min="10", version_max="10")
    assert whole_major.accepts("10.16.1") and not whole_major.accepts("11.0")
    with pytest.raises(ValueError):
        trt.accepts("ten")
    assert version_tuple("10.3.0.30") == (10, 3, 0, 30) and version_tuple("10.3.0.post1") == (10, 3, 0)
    with pytest.raises(ValueError, match="not a version number"):
        version_tuple("ten")


def test_replace_validates_again() -> None:
    profile = load_profile("server-gpu")
    assert profile.tensorrt is not None
    wider = dataclasses.replace(profile, tensorrt=dataclasses.replace(profile.tensorrt, version_min="10.0"))
    assert wider.tensorrt is not None and wider.tensorrt.accepts("10.0.1") and wider != profile
    with pytest.raises(ValidationError, match="batch.opt = 500 is larger than batch.max = 128"):
        dataclasses.replace(profile.batch, opt=500)
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("opt = 1", "opt = 8", "batch.opt = 8 is larger than batch.max = 4"),
        ("min = 1", "min = 0", "batch.min = 0 must be at least 1"),
        ("workspace_mib = 1024", "worksp = 1024", "unknown key 'tensorrt.worksp'"),
        ('precision = "fp16"', 'precision = "fp8"', "backend.precision must be one of fp32, fp16, int8 (got 'fp8')"),
        ('precision = "fp16"', 'precision = "int8"', "does not match backend.default_target = 'trt-fp16'"),
        ('default_target = "trt-fp16"', 'default_target = "tpu"', "backend.default_target must be one of onnx,"),
        ("max = 4", 'max = "4"', "batch.max must be an integer (got '4')"),
        ("threads = 6", "threads = true", "backend.threads must be an integer (got True)"),
        ("threads = 6", 'threads = 6\nisa = "sse4"', "backend.isa must be one of avx2, avx512, avx512-vnni, arm64"),
        ("dla_core = -1", "dla_core = -2", "tensorrt.dla_core = -2 must be -1"),
        ("dla_core = -1", "dla_core = 0", "needs a fixed batch (batch.min = batch.opt = batch.max)"),
        ('version_min = "10.3"', 'version_min = "ten"', "tensorrt.version_min = 'ten' is not a version number"),
        ('version_min = "10.3"', 'version_min = "12.0"', "tensorrt.version_min = '12.0' is newer than"),
        ("max_accuracy_drop = 0.02", "max_accuracy_drop = 2", "gate.max_accuracy_drop = 2.0 must be a fraction"),
        ("latency_budget_ms = 20.0", "latency_budget_ms = 0", "gate.latency_budget_ms = 0.0 must be positive"),
        ('name = "test-device"', 'name = "Test Device"', "must be lower-case letters"),
        ('description = "a test device"\n', 'description = "a test device"\nvendor = "x"\n', "unknown key 'vendor'"),
        ("[gate]", "[gates]", "unknown key 'gates'"),
        ('description = "a test device"\n', 'description = "a test device"\nsource = "x"\n', "unknown key 'source'"),
        ("[tensorrt]", "[[tensorrt]]", "'tensorrt' must be a table ([tensorrt]), got [{'workspace_mib': 1024"),
        ("latency_budget_ms = 20.0", 'latency_budget_ms = "20"', "gate.latency_budget_ms must be a number (got '20')"),
        ('version_max = "11.99"', 'version_max = "11.99rc1"', "tensorrt.version_max = '11.99rc1' is not a version"),
    ],
)
def test_invalid_profiles_name_file_key_and_problem(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in VALID
    path = _write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(EdgepruneError) as err:
        read_profile_file(path)
    assert message in str(err.value)
    assert str(err.value).startswith(str(path)) or str(err.value).startswith("test-device.toml")


def test_every_problem_is_reported_on_a_line_naming_the_file(tmp_path: Path) -> None:
    text = VALID.replace("max = 4", 'max = "4"').replace("workspace_mib = 1024", "worksp = 1024")
    with pytest.raises(EdgepruneError) as err:
        read_profile_file(_write(tmp_path, text))
    lines = str(err.value).splitlines()
    assert all(line.startswith((str(tmp_path), "test-device.toml")) for line in lines)
    assert [line.split(".toml: ", 1)[1] for line in lines] == [
        "batch.max must be an integer (got '4')",
        "missing key 'tensorrt.workspace_mib'",
        "unknown key 'tensorrt.worksp' (known: tensorrt.workspace_mib, tensorrt.dla_core, tensorrt.version_min, "
        "tensorrt.version_max)",
    ]


def test_dla_profile_needs_fixed_batch_and_reduced_precision(tmp_path: Path) -> None:
    dla = VALID.replace("dla_core = -1", "dla_core = 0").replace("max = 4", "max = 1")
    assert read_profile_file(_write(tmp_path, dla)).tensorrt.uses_dla
    fp32 = dla.replace('"trt-fp16"', '"trt-fp32"').replace('precision = "fp16"', 'precision = "fp32"')
    with pytest.raises(EdgepruneError, match="the DLA has no fp32"):
        read_profile_file(_write(tmp_path, fp32))


def test_missing_sections(tmp_path: Path) -> None:
    no_trt = VALID[: VALID.index("[tensorrt]")] + VALID[VALID.index("[gate]") :]
    with pytest.raises(EdgepruneError, match=r"'trt-fp16' needs a \[tensorrt\] section"):
        read_profile_file(_write(tmp_path, no_trt))
    no_gate = VALID[: VALID.index("[gate]")]
    with pytest.raises(EdgepruneError, match=r"missing section \[gate\]"):
        read_profile_file(_write(tmp_path, no_gate))
    with pytest.raises(EdgepruneError, match="missing key 'batch.opt'"):
        read_profile_file(_write(tmp_path, VALID.replace("opt = 1\n", "")))


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID.replace("[batch]", "[batch"))
    with pytest.raises(EdgepruneError, match=r"invalid TOML: .*line 9"):
        read_profile_file(path)


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(EdgepruneError) as err:
        load_profile("jetson-nano-2gb")
    assert "unknown profile 'jetson-nano-2gb'" in str(err.value)
    assert all(name in str(err.value) for name in SHIPPED)
    with pytest.raises(EdgepruneError, match="does not exist"):
        load_profile("no/such/profile.toml")


def test_profiles_folder_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, VALID)
    monkeypatch.setenv("EDGEPRUNE_PROFILES", str(tmp_path))
    assert load_profile("test-device").name == "test-device"
    assert "test-device" in {p.name for p in list_profiles()}
    _write(tmp_path, VALID, "other-name")
    with pytest.raises(EdgepruneError, match="differs from the file name 'other-name'"):
        load_profile("other-name")


def test_a_cpu_build_warns_when_the_profile_names_another_cpu() -> None:
    from edgeprune.hardware import cpu_isa
    from edgeprune.pipeline.export import warn_if_other_cpu
    from edgeprune.targets import resolve_target
    from tests.conftest import Notes

    profile = load_profile("cpu-x86")
    assert profile.backend.isa == "avx2"
    other = "arm64-dotprod" if cpu_isa() != "arm64-dotprod" else "avx2"
    elsewhere = dataclasses.replace(profile, backend=dataclasses.replace(profile.backend, isa=other))
    notes = Notes()
    warn_if_other_cpu(elsewhere, resolve_target("ort-cpu-int8"), notes)
    assert len(notes.lines) == 1 and f"is for {other} CPUs; this one is {cpu_isa()}" in notes.lines[0]
    here = dataclasses.replace(profile, backend=dataclasses.replace(profile.backend, isa=cpu_isa()))
    warn_if_other_cpu(here, resolve_target("ort-cpu-int8"), notes)  # the same CPU, or a GPU target: nothing
    warn_if_other_cpu(elsewhere, resolve_target("trt-fp16"), notes)
    assert len(notes.lines) == 1
