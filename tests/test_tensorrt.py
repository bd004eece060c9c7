"""TensorRT: build plans, trtexec flags, the deploy bundle (and its build.sh), and the builder against a stand-in
`tensorrt` module. The tests that need the real TensorRT run only where it is installed (an NVIDIA GPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edgeprune.export.tensorrt as trt_module
import edgeprune.export.trt_common as trt_common
from edgeprune.errors import EdgepruneError
from edgeprune.export.fp16 import is_float16_model
from edgeprune.export.quantize import agreement, is_qdq_model
from edgeprune.export.tensorrt import (
    TrtRunner,
    build_engine,
    plan_build,
    require_tensorrt,
    tensorrt_available,
    trtexec_command,
    verify_bundle,
    write_bundle,
)
from edgeprune.profiles import Profile, load_profile, read_profile_file
from edgeprune.workspace import file_sha256
from tests.tiny_vit import TinyVit

needs_tensorrt = pytest.mark.skipif(
    not tensorrt_available(), reason="TensorRT is not installed (it needs an NVIDIA GPU and NVIDIA's libraries)"
)
SHAPES = "--minShapes=input:1x3x64x64 --optShapes=input:1x3x64x64 --maxShapes=input:4x3x64x64"
OPT = "1x3x64x64"  # the profile's opt batch


@pytest.fixture
def dla_int8_profile(tmp_path: Path) -> Profile:
    """Jetson AGX Orin on DLA core 0, INT8, fixed batch 1 (the DLA has no dynamic shapes)."""
    text = (load_profile("jetson-agx-orin").source or Path()).read_text()
    text = text.replace('name = "jetson-agx-orin"', 'name = "agx-orin-dla"')
    text = text.replace('default_target = "trt-fp16"', 'default_target = "trt-int8"')
    text = text.replace('precision = "fp16"', 'precision = "int8"').replace("dla_core = -1", "dla_core = 0")
    text = text.replace("opt = 4", "opt = 1").replace("max = 16", "max = 1")
    path = tmp_path / "agx-orin-dla.toml"
    path.write_text(text)
    return read_profile_file(path)


# ----------------------------------------------------------------------------------------------------------------
# Plans and trtexec flags
# ----------------------------------------------------------------------------------------------------------------


def test_tensorrt_missing_is_a_clear_error() -> None:
    if tensorrt_available():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(EdgepruneError) as err:
        require_tensorrt()
    assert "TensorRT is not installed here" in str(err.value)
    assert "edgeprune export --target trt-fp16" in str(err.value) and "edgeprune build BUNDLE" in str(err.value)


def test_plans_for_tensorrt_10_and_11() -> None:
    nano, server = load_profile("jetson-orin-nano"), load_profile("server-gpu")
    ten = plan_build("10.3.0.30", "fp16", nano, (3, 224, 224))
    assert not ten.strongly_typed and ten.builder_flags == ("FP16",) and ten.onnx_kind == "fp32"
    assert ten.input_shapes == ((1, 3, 224, 224), (1, 3, 224, 224), (4, 3, 224, 224))
    eleven = plan_build("11.4.1", "fp16", server, (3, 224, 224))
    assert eleven.strongly_typed and eleven.builder_flags == () and eleven.onnx_kind == "fp16"
    assert plan_build("10.16", "int8", server, (3, 224, 224)).builder_flags == ("INT8", "FP16")
    assert plan_build("11.4", "int8", server, (3, 224, 224)).onnx_kind == "qdq"
    with pytest.raises(EdgepruneError, match="TensorRT 11.4.1 is outside profile 'jetson-orin-nano''s range"):
        plan_build("11.4.1", "fp16", nano, (3, 224, 224))
    with pytest.raises(EdgepruneError, match="has no \\[tensorrt\\] section"):
        plan_build("10.3", "fp16", load_profile("cpu-x86"), (3, 224, 224))


def test_dla_plans(dla_int8_profile: Profile) -> None:
    ten = plan_build("10.3", "int8", dla_int8_profile, (3, 64, 64))
    assert ten.dla_core == 0 and ten.builder_flags == ("INT8", "FP16")
    with pytest.raises(EdgepruneError, match="has no DLA support"):
        plan_build("11.2.0", "int8", dla_int8_profile, (3, 64, 64))
    assert plan_build("11.4.1", "int8", dla_int8_profile, (3, 64, 64)).strongly_typed


def test_trtexec_flags_for_jetson_orin_nano_fp16() -> None:
    plan = plan_build("10.3", "fp16", load_profile("jetson-orin-nano"), (3, 64, 64))
    assert " ".join(trtexec_command(plan, "model.onnx")) == (
        f"--onnx=model.onnx --saveEngine=model.engine {SHAPES} --memPoolSize=workspace:1024M --fp16 "
        "--timingCacheFile=timing.cache"
    )


# ----------------------------------------------------------------------------------------------------------------
# Deploy bundles
# ----------------------------------------------------------------------------------------------------------------


def _bundle(
    folder: Path, onnx_path: Path, target: str, profile: Profile, calibration=None, model_sha256: str = "0" * 64
) -> dict:
    return write_bundle(
        folder,
        onnx_path=onnx_path,
        target=target,
        profile=profile,
        calibration=calibration,
        model_sha256=model_sha256,
        onnx_sha256=file_sha256(onnx_path),
    )


@pytest.fixture
def weights_sha256(tiny: TinyVit, tmp_path: Path) -> str:
    """The sha256 of real PyTorch weights: the tiny model saved as model.safetensors, as a run stores it."""
    from safetensors.torch import save_file

    path = tmp_path / "weights" / "model.safetensors"
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    return file_sha256(path)


def test_bundle_for_jetson_orin_nano_fp16(fp32_onnx: Path, tiny: TinyVit, tmp_path: Path) -> None:
    profile = load_profile("jetson-orin-nano")
    folder = tmp_path / "bundle"
    manifest = _bundle(folder, fp32_onnx, "trt-fp16", profile)

    names = {p.name for p in folder.iterdir()}
    assert names == {"model.onnx", "model.fp16.onnx", "profile.toml", "build.sh", "SHA256SUMS", "manifest.json"}
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["target"] == "trt-fp16" and manifest["profile"] == "jetson-orin-nano"
    assert manifest["tensorrt"] == {"version_min": "10.3", "version_max": "10.99"}
    assert manifest["model_sha256"] == "0" * 64 and manifest["onnx_sha256"] == file_sha256(fp32_onnx)
    assert manifest["input"] == {"name": "input", "shape": ["batch", 3, 64, 64]}
    assert set(manifest["files"]) == names - {"SHA256SUMS", "manifest.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(folder / name)
    assert verify_bundle(folder) == []
    assert read_profile_file(folder / "profile.toml") == profile
    assert is_float16_model(folder / "model.fp16.onnx")
    assert agreement(folder / "model.onnx", folder / "model.fp16.onnx", tiny.target_images[:8])["top1_agreement"] == 1

    # Orin Nano stays on TensorRT 10 (JetPack 6): one weakly typed command, fp32 ONNX + --fp16.
    assert set(manifest["build"]) == {"tensorrt_10"}
    assert manifest["build"]["tensorrt_10"] == (
        f"trtexec --onnx=model.onnx --saveEngine=model.engine {SHAPES} --memPoolSize=workspace:1024M --fp16 "
        "--timingCacheFile=timing.cache"
    )
    script = (folder / "build.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and (folder / "build.sh").stat().st_mode & 0o111
    assert "--fp16" in script and "--stronglyTyped" not in script and "--int8" not in script
    assert "--useDLACore" not in script and "10.3 to 10.99" in script
    assert f"--loadEngine=model.engine --shapes=input:{OPT} --iterations=50 --dumpProfile" in script  # per layer

    (folder / "model.onnx").write_bytes(b"tampered")
    assert verify_bundle(folder) == ["model.onnx"]


def test_bundle_for_a_dla_profile_with_int8(
    fp32_onnx: Path, tiny: TinyVit, dla_int8_profile: Profile, tmp_path: Path
) -> None:
    folder = tmp_path / "bundle"
    calibration = tiny.source_images[:32]
    manifest = _bundle(folder, fp32_onnx, "trt-int8", dla_int8_profile, calibration)

    assert {"model.onnx", "model.int8.onnx", "calibration.npy", "profile.toml", "build.sh"} <= set(manifest["files"])
    assert "model.fp16.onnx" not in manifest["files"]
    np.testing.assert_array_equal(np.load(folder / "calibration.npy"), calibration)
    assert is_qdq_model(folder / "model.int8.onnx")
    assert manifest["quantization"]["calibration_images"] == 32
    assert manifest["batch"] == {"min": 1, "opt": 1, "max": 1}

    fixed = "--minShapes=input:1x3x64x64 --optShapes=input:1x3x64x64 --maxShapes=input:1x3x64x64"
    common = f"trtexec --onnx=model.int8.onnx --saveEngine=model.engine {fixed} --memPoolSize=workspace:4096M"
    assert manifest["build"] == {
        "tensorrt_10": f"{common} --int8 --fp16 --useDLACore=0 --allowGPUFallback --timingCacheFile=timing.cache",
        "tensorrt_11": f"{common} --stronglyTyped --useDLACore=0 --allowGPUFallback --timingCacheFile=timing.cache",
    }


def test_bundle_refusals(fp32_onnx: Path, tmp_path: Path) -> None:
    nano = load_profile("jetson-orin-nano")
    with pytest.raises(EdgepruneError, match="not 'ort-cpu'"):
        _bundle(tmp_path / "b", fp32_onnx, "ort-cpu", nano)
    with pytest.raises(EdgepruneError, match="needs calibration images"):
        _bundle(tmp_path / "b", fp32_onnx, "trt-int8", nano)
    with pytest.raises(EdgepruneError, match="no \\[tensorrt\\] section"):
        _bundle(tmp_path / "b", fp32_onnx, "trt-fp16", load_profile("cpu-arm64"))
    with pytest.raises(EdgepruneError, match="changed since export"):
        write_bundle(
            tmp_path / "b",
            onnx_path=fp32_onnx,
            target="trt-fp16",
            profile=nano,
            calibration=None,
            model_sha256="0" * 64,
            onnx_sha256="f" * 64,
        )
    with pytest.raises(EdgepruneError, match="model_sha256 must be the source weights' sha256"):
        _bundle(tmp_path / "b", fp32_onnx, "trt-fp16", nano, model_sha256="weights.safetensors")
    assert not (tmp_path / "b").exists()


FAKE_TRTEXEC = """#!/usr/bin/env bash
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{code}] [b1] # trtexec $*"
case "$1" in
  --help) ;;
  --loadEngine=*) printf '%s\\n' "$@" > "$(dirname "$0")/profile-args.txt" ;;
  *) printf '%s\\n' "$@" > "$(dirname "$0")/args.txt" ;;
esac
"""


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None, reason="needs bash, sha256sum")
@pytest.mark.parametrize(
    ("code", "rc", "expected"),
    [
        ("100300", 0, ["--int8", "--fp16", "--useDLACore=0", "--allowGPUFallback"]),  # TensorRT 10.3 (JetPack 6)
        ("110401", 0, ["--stronglyTyped", "--useDLACore=0", "--allowGPUFallback"]),  # TensorRT 11.4.1 (JetPack 7)
        ("8602", 3, None),  # TensorRT 8.6.2: outside the profile's range
    ],
)
def test_build_script_runs_the_command_for_the_installed_tensorrt(
    fp32_onnx: Path, tiny: TinyVit, dla_int8_profile: Profile, tmp_path: Path, code: str, rc: int, expected
) -> None:
    folder = tmp_path / "bundle"
    _bundle(folder, fp32_onnx, "trt-int8", dla_int8_profile, tiny.source_images[:8])
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    fake.write_text(FAKE_TRTEXEC.format(code=code))
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", str(folder / "build.sh")],
        env={"PATH": "/usr/bin:/bin", "TRTEXEC": str(fake)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == rc, done.stderr
    if expected is None:
        assert "outside this profile's range 10.3 to 11.99" in done.stderr
        assert not (fake.parent / "args.txt").exists()
        return
    args = (fake.parent / "args.txt").read_text().split()
    assert args[0] == "--onnx=model.int8.onnx" and args[-1] == "--timingCacheFile=timing.cache"
    assert all(flag in args for flag in expected)
    assert ("--stronglyTyped" in args) == code.startswith("11") and ("--int8" in args) == code.startswith("10")
    # then a per-layer profile of the engine, which bench reads (a DLA engine has one shape: no --shapes)
    profiling = (fake.parent / "profile-args.txt").read_text().split()
    assert profiling[0] == "--loadEngine=model.engine" and "--exportProfile=model.engine.profile.json" in profiling
    assert {"--dumpProfile", "--separateProfileRun"} <= set(profiling) and not any(
        a.startswith("--shapes") for a in profiling
    )


# ----------------------------------------------------------------------------------------------------------------
# The builder against a stand-in tensorrt module (records what build_engine asks of the API)
# ----------------------------------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, version: str):
        self.version = version
        self.calls: list[tuple] = []


def _fake_tensorrt(version: str, dla_cores: int = 0) -> tuple[SimpleNamespace, _Recorder]:
    log = _Recorder(version)
    major = int(version.split(".")[0])
    flags = {"GPU_FALLBACK": "GPU_FALLBACK"}
    if major < 11:  # TensorRT 11 removed the precision flags
        flags.update(FP16="FP16", INT8="INT8")

    class Cache:
        def serialize(self) -> bytes:
            return b"timing-cache"

    class Config:
        def __init__(self) -> None:
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            log.calls.append(("pool", pool, size))

        def set_flag(self, flag):
            log.calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            log.calls.append(("profile", profile.shapes))

        def create_timing_cache(self, data):
            log.calls.append(("create_timing_cache", data))
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

        def __setattr__(self, name, value):
            if name in ("default_device_type", "DLA_core"):
                log.calls.append((name, value))
            object.__setattr__(self, name, value)

    class OptimizationProfile:
        def set_shape(self, name, low, opt, high):
            self.shapes = (name, low, opt, high)

    class Network:
        num_inputs = 1

        def get_input(self, index):
            return SimpleNamespace(name="input", shape=(-1, 3, 64, 64))

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log.calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            return b"engine-bytes"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            log.calls.append(("parse", Path(path).name, _kind(Path(path))))
            return True

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    module = SimpleNamespace(
        __version__=version,
        Logger=Logger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=SimpleNamespace(**flags),
        DeviceType=SimpleNamespace(DLA="DLA", GPU="GPU"),
        NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1),
    )
    return module, log


def _kind(path: Path) -> str:
    return trt_module.onnx_kind(path)


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    def install(version: str, dla_cores: int = 0) -> _Recorder:
        module, log = _fake_tensorrt(version, dla_cores)
        monkeypatch.setattr(trt_common, "_tensorrt", lambda: module)
        return log

    return install


def test_build_engine_on_tensorrt_10_uses_precision_flags(fp32_onnx: Path, fake_trt, tmp_path: Path) -> None:
    log = fake_trt("10.3.0.30")
    cache = tmp_path / "timing.cache"
    record = build_engine(
        fp32_onnx,
        tmp_path / "model.engine",
        precision="fp16",
        profile=load_profile("jetson-orin-nano"),
        timing_cache=cache,
    )
    assert (tmp_path / "model.engine").read_bytes() == b"engine-bytes" and cache.read_bytes() == b"timing-cache"
    assert ("create_network", 0) in log.calls and ("flag", "FP16") in log.calls
    assert ("parse", "model.onnx", "fp32") in log.calls
    assert ("pool", "WORKSPACE", 1024 << 20) in log.calls and ("create_timing_cache", b"") in log.calls
    assert ("profile", ("input", (1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 64, 64))) in log.calls
    assert record["strongly_typed"] is False and record["builder_flags"] == ["FP16"] and record["conversions"] == {}
    assert record["engine_sha256"] == file_sha256(tmp_path / "model.engine")


def test_build_engine_on_tensorrt_11_converts_to_fp16(fp32_onnx: Path, fake_trt, tmp_path: Path) -> None:
    log = fake_trt("11.4.1")
    record = build_engine(fp32_onnx, tmp_path / "e.engine", precision="fp16", profile=load_profile("server-gpu"))
    assert not [c for c in log.calls if c[0] == "flag"]  # strongly typed: no precision flags
    assert ("parse", "model.fp16.onnx", "fp16") in log.calls
    assert record["strongly_typed"] and "fp16" in record["conversions"]


def test_build_engine_int8_on_dla(fp32_onnx: Path, tiny: TinyVit, dla_int8_profile, fake_trt, tmp_path) -> None:
    log = fake_trt("10.3", dla_cores=2)
    with pytest.raises(EdgepruneError, match="needs a QDQ ONNX or calibration images"):
        build_engine(fp32_onnx, tmp_path / "e.engine", precision="int8", profile=dla_int8_profile)
    record = build_engine(
        fp32_onnx,
        tmp_path / "e.engine",
        precision="int8",
        profile=dla_int8_profile,
        calibration=tiny.source_images[:16],
    )
    assert ("parse", "model.int8.onnx", "qdq") in log.calls
    assert {("flag", "INT8"), ("flag", "FP16"), ("flag", "GPU_FALLBACK")} <= set(log.calls)
    assert ("default_device_type", "DLA") in log.calls and ("DLA_core", 0) in log.calls
    assert record["conversions"]["quantization"]["calibration_images"] == 16
    fake_trt("10.3", dla_cores=0)
    with pytest.raises(EdgepruneError, match="asks for DLA core 0 but this device has 0 DLA core"):
        build_engine(
            fp32_onnx,
            tmp_path / "e.engine",
            precision="int8",
            profile=dla_int8_profile,
            calibration=tiny.source_images[:4],
        )


def test_build_engine_refuses_a_version_outside_the_profile(fp32_onnx: Path, fake_trt, tmp_path: Path) -> None:
    fake_trt("11.4.1")
    with pytest.raises(EdgepruneError, match="outside profile 'jetson-orin-nano''s range 10.3 to 10.99"):
        build_engine(fp32_onnx, tmp_path / "e.engine", precision="fp16", profile=load_profile("jetson-orin-nano"))
    assert not (tmp_path / "e.engine").exists()


# ----------------------------------------------------------------------------------------------------------------
# Real TensorRT (NVIDIA GPU only)
# ----------------------------------------------------------------------------------------------------------------


def _gpu_profile() -> Profile:
    """server-gpu with its version range widened to the installed TensorRT, small batch range."""
    profile = load_profile("server-gpu")
    assert profile.tensorrt is not None
    settings = replace(profile.tensorrt, version_min="10.0", version_max="11.99")
    return replace(profile, tensorrt=settings, batch=replace(profile.batch, opt=2, max=4))


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_engine_agrees_with_onnxruntime(fp32_onnx: Path, tiny: TinyVit, tmp_path: Path, precision: str) -> None:
    import torch

    from edgeprune.export.runners import OrtRunner

    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA device is visible")
    engine = tmp_path / "model.engine"
    record = build_engine(
        fp32_onnx,
        engine,
        precision=precision,
        profile=_gpu_profile(),
        timing_cache=tmp_path / "timing.cache",
        calibration=tiny.source_images,
    )
    assert engine.stat().st_size > 0 and (tmp_path / "timing.cache").stat().st_size > 0
    runner = TrtRunner(engine)
    expected = OrtRunner(fp32_onnx).run(tiny.target_images)
    got = np.concatenate([runner.run(tiny.target_images[i : i + 4]) for i in range(0, len(tiny.target_images), 4)])
    assert got.shape == expected.shape
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97, record


def test_build_bundle_on_the_device(fp32_onnx: Path, fake_trt, weights_sha256: str, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    manifest = _bundle(folder, fp32_onnx, "trt-fp16", load_profile("server-gpu"), model_sha256=weights_sha256)
    log = fake_trt("11.4.1")
    record = trt_module.build_bundle(folder)
    assert ("parse", "model.fp16.onnx", "fp16") in log.calls  # TensorRT 11: the float16 ONNX, no flags
    assert (folder / "model.engine").read_bytes() == b"engine-bytes"
    assert (folder / "timing.cache").exists() and json.loads((folder / "build.json").read_text()) == record
    assert record["model_sha256"] == manifest["model_sha256"] == weights_sha256
    assert record["conversions"] == {} and record["onnx"] == "model.fp16.onnx"
    assert record["engine_sha256"] == file_sha256(folder / "model.engine")
    log = fake_trt("10.3")
    trt_module.build_bundle(folder)
    assert ("parse", "model.onnx", "fp32") in log.calls and ("flag", "FP16") in log.calls
    (folder / "profile.toml").write_text((folder / "profile.toml").read_text().replace("8192", "16"))
    with pytest.raises(EdgepruneError, match="has changed since it was written: profile.toml"):
        trt_module.build_bundle(folder)


def test_bundle_and_its_engine_name_the_real_model_hash(
    fp32_onnx: Path, tiny: TinyVit, fake_trt, weights_sha256: str, dla_int8_profile: Profile, tmp_path: Path
) -> None:
    """The manifest records the source weights' sha256 as given, and the build.json made on the device copies it."""
    assert weights_sha256 != "0" * 64 and len(weights_sha256) == 64
    folder = tmp_path / "bundle"
    manifest = _bundle(folder, fp32_onnx, "trt-int8", dla_int8_profile, tiny.source_images[:8], weights_sha256)
    assert manifest["model_sha256"] == weights_sha256 and manifest["onnx_sha256"] == file_sha256(fp32_onnx)
    assert json.loads((folder / "manifest.json").read_text())["model_sha256"] == weights_sha256
    fake_trt("10.3", dla_cores=1)
    record = trt_module.build_bundle(folder)
    assert record["model_sha256"] == weights_sha256 and record["onnx"] == "model.int8.onnx"
    assert json.loads((folder / "build.json").read_text())["model_sha256"] == weights_sha256
