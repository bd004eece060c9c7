"""TensorRT engines: build one (TensorRT 10 and 11), run one, or write a deploy bundle to build on the device.

TensorRT 10 (JetPack 6 ships 10.3) builds weakly typed networks: the ONNX stays float32 and builder flags pick
the precision (FP16; INT8 + FP16 for a QDQ model, whose Q/DQ nodes fix what runs in INT8). TensorRT 11 removed
those flags: every network is strongly typed and runs in the types its ONNX declares, so fp16 needs the float16
ONNX from `edgeprune.export.fp16` and int8 a QDQ ONNX from `edgeprune.export.quantize`.

Where TensorRT is missing (no NVIDIA GPU here), `write_bundle` packs what the device needs: the ONNX files, the
hardware profile, source-domain calibration images for INT8, and a `build.sh` with the exact `trtexec` command for
TensorRT 10 and for TensorRT 11.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from edgeprune.backends.base import Runner
from edgeprune.errors import EdgepruneError
from edgeprune.export.fp16 import convert_fp16, is_float16_model
from edgeprune.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from edgeprune.export.quantize import is_qdq_model, quantize_static_int8
from edgeprune.profiles import Profile, profile_to_toml, read_profile_file, version_tuple
from edgeprune.targets import TARGETS, targets_where
from edgeprune.workspace import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
    read_json,
    utc_now,
)

TRT_TARGETS = targets_where("tensorrt_engine")
ENGINE_FILE = "model.engine"
TIMING_CACHE_FILE = "timing.cache"
MISSING_HINT = (
    "TensorRT is not installed here: it needs an NVIDIA GPU and NVIDIA's libraries (`pip install tensorrt`, or "
    "JetPack on a Jetson). Use `edgeprune export --target trt-fp16` to write a deploy bundle and build it on the "
    "device with `edgeprune build BUNDLE`"
)


# --------------------------------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tensorrt() -> ModuleType | None:
    try:
        import tensorrt
    except (ImportError, OSError):  # OSError: the wheel is there but libnvinfer or the CUDA driver is not
        return None
    return tensorrt


def tensorrt_available() -> bool:
    return _tensorrt() is not None


def tensorrt_version() -> str | None:
    trt = _tensorrt()
    return None if trt is None else str(trt.__version__)


def require_tensorrt() -> ModuleType:
    trt = _tensorrt()
    if trt is None:
        raise EdgepruneError(MISSING_HINT)
    return trt


# --------------------------------------------------------------------------------------------------------------
# Build plan: what a given TensorRT version needs for a precision and a profile (pure logic, no TensorRT needed)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    tensorrt_major: int
    precision: str
    strongly_typed: bool  # TensorRT 11: precision comes from the ONNX types
    onnx_kind: str  # "fp32", "fp16" or "qdq": what the ONNX handed to TensorRT must be
    builder_flags: tuple[str, ...]  # weakly typed precision flags (TensorRT 10): "FP16", "INT8"
    input_shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # min, opt, max
    workspace_mib: int
    dla_core: int


def plan_build(tensorrt_version: str, precision: str, profile: Profile, chw: tuple[int, int, int]) -> BuildPlan:
    """The build settings for TensorRT `tensorrt_version`; errors when the profile cannot be built with it."""
    if precision not in ("fp32", "fp16", "int8"):
        raise EdgepruneError(f"unknown TensorRT precision '{precision}': choose fp32, fp16 or int8")
    settings = profile.tensorrt
    if settings is None:
        raise EdgepruneError(f"profile '{profile.name}' has no [tensorrt] section: it does not target TensorRT")
    version = version_tuple(tensorrt_version)
    if not settings.accepts(tensorrt_version):
        raise EdgepruneError(
            f"TensorRT {tensorrt_version} is outside profile '{profile.name}''s range "
            f"{settings.version_min} to {settings.version_max}"
        )
    if settings.uses_dla and precision == "fp32":
        raise EdgepruneError(f"profile '{profile.name}' uses DLA core {settings.dla_core}: the DLA has no fp32")
    if settings.uses_dla and (11, 0) <= version[:2] < (11, 4):
        raise EdgepruneError(
            f"TensorRT {tensorrt_version} has no DLA support (11.0 to 11.3 dropped it; 11.4.1 on JetPack 7.2.2+ and "
            "10.x have it): use another TensorRT or set tensorrt.dla_core = -1"
        )
    strong = version[0] >= 11
    kind = {"fp32": "fp32", "fp16": "fp16" if strong else "fp32", "int8": "qdq"}[precision]
    flags: tuple[str, ...] = ()
    if not strong:
        # Weak typing: FP16 lets TensorRT pick fp16 kernels; with a QDQ model INT8 enables the explicit Q/DQ
        # layers and FP16 covers the layers the Q/DQ nodes leave in float.
        flags = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]
    batch = profile.batch
    shapes = tuple((b, *chw) for b in (batch.min, batch.opt, batch.max))
    return BuildPlan(version[0], precision, strong, kind, flags, shapes, settings.workspace_mib, settings.dla_core)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(
    plan: BuildPlan,
    onnx_file: str,
    engine_file: str = ENGINE_FILE,
    timing_cache_file: str | None = TIMING_CACHE_FILE,
    input_name: str = INPUT_NAME,
) -> list[str]:
    """The `trtexec` arguments (without the program) that build `plan`'s engine from `onnx_file`."""
    low, opt, high = plan.input_shapes
    args = [
        f"--onnx={onnx_file}",
        f"--saveEngine={engine_file}",
        f"--minShapes={input_name}:{_shape_text(low)}",
        f"--optShapes={input_name}:{_shape_text(opt)}",
        f"--maxShapes={input_name}:{_shape_text(high)}",
        f"--memPoolSize=workspace:{plan.workspace_mib}M",
    ]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in plan.builder_flags]
    if plan.dla_core >= 0:
        args += [f"--useDLACore={plan.dla_core}", "--allowGPUFallback"]
    if timing_cache_file:
        args.append(f"--timingCacheFile={timing_cache_file}")
    return args


# --------------------------------------------------------------------------------------------------------------
# ONNX helpers
# --------------------------------------------------------------------------------------------------------------


def onnx_input_chw(path: Path, input_name: str = INPUT_NAME) -> tuple[int, int, int]:
    """(C, H, W) of the model's input; the batch dimension may be dynamic, the others must be fixed."""
    model = onnx.load(str(path), load_external_data=False)
    for value in model.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
                raise EdgepruneError(f"{path.name}: input '{input_name}' must be (batch, C, H, W) with fixed C, H, W")
            return dims[1].dim_value, dims[2].dim_value, dims[3].dim_value
    raise EdgepruneError(f"{path.name} has no input named '{input_name}' (see edgeprune.export.onnx_export)")


def onnx_kind(path: Path) -> str:
    if is_qdq_model(path):
        return "qdq"
    return "fp16" if is_float16_model(path) else "fp32"


def _prepare_onnx(onnx_path: Path, plan: BuildPlan, calibration: np.ndarray | None, work: Path) -> tuple[Path, dict]:
    """The ONNX file that `plan` needs, converting or quantizing `onnx_path` into `work` when it is not that."""
    kind = onnx_kind(onnx_path)
    if kind == plan.onnx_kind or (kind == "fp16" and plan.onnx_kind == "fp32" and plan.precision == "fp16"):
        return onnx_path, {}
    if plan.onnx_kind == "fp16" and kind == "fp32":
        target = work / "model.fp16.onnx"
        return target, {"fp16": convert_fp16(onnx_path, target)}
    if plan.onnx_kind == "qdq" and kind == "fp32":
        if calibration is None:
            raise EdgepruneError(
                f"{onnx_path.name} is not quantized: trt-int8 needs a QDQ ONNX or calibration images "
                "(source-domain images only) to quantize it with"
            )
        target = work / "model.int8.onnx"
        return target, {"quantization": quantize_static_int8(onnx_path, target, calibration)}
    raise EdgepruneError(
        f"{onnx_path.name} is a {kind} ONNX but a {plan.precision} engine on TensorRT {plan.tensorrt_major} "
        f"needs a {plan.onnx_kind} one: pass the fp32 model.onnx"
    )


# --------------------------------------------------------------------------------------------------------------
# Build and run (need TensorRT)
# --------------------------------------------------------------------------------------------------------------


def _network_flags(trt: ModuleType, major: int) -> int:
    if major < 10:  # TensorRT 8.x: explicit batch is opt-in (implicit batch is gone in 10)
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0  # 10.x: weakly typed (precision flags); 11.x: always strongly typed, the flag is ignored


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str,
    profile: Profile,
    timing_cache: Path | None = None,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Build `engine_path` from `onnx_path` for `profile` with the installed TensorRT; returns a build record.

    `onnx_path` is the fp32 export (converted to float16 / quantized here when TensorRT 11 or int8 needs it:
    int8 then needs `calibration`, source-domain images only) or an already converted float16 / QDQ ONNX.
    `timing_cache` is read when it exists and written back after the build, which makes rebuilds fast.
    """
    trt = require_tensorrt()
    version = str(trt.__version__)
    plan = plan_build(version, precision, profile, onnx_input_chw(onnx_path))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeprune-trt-") as work:
        model_path, conversions = _prepare_onnx(onnx_path, plan, calibration, Path(work))
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(_network_flags(trt, plan.tensorrt_major))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(model_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EdgepruneError(f"TensorRT {version} cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
        for flag in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        input_name = network.get_input(0).name
        optimisation = builder.create_optimization_profile()
        optimisation.set_shape(input_name, *plan.input_shapes)
        config.add_optimization_profile(optimisation)
        if plan.dla_core >= 0:
            if builder.num_DLA_cores <= plan.dla_core:
                raise EdgepruneError(
                    f"profile '{profile.name}' asks for DLA core {plan.dla_core} but this device has "
                    f"{builder.num_DLA_cores} DLA core(s)"
                )
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = plan.dla_core
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        if timing_cache is not None:
            previous = timing_cache.read_bytes() if timing_cache.exists() else b""
            config.set_timing_cache(config.create_timing_cache(previous), ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise EdgepruneError(
                f"TensorRT {version} could not build a {precision} engine from {onnx_path.name} (see the TensorRT "
                f"log above; a larger tensorrt.workspace_mib in profile '{profile.name}' can help)"
            )
        atomic_write_bytes(engine_path, bytes(serialized))
        if timing_cache is not None:
            atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return {
        "tensorrt": version,
        "precision": precision,
        "strongly_typed": plan.strongly_typed,
        "builder_flags": list(plan.builder_flags),
        "profile": profile.name,
        "input_shapes": {k: list(s) for k, s in zip(("min", "opt", "max"), plan.input_shapes, strict=True)},
        "workspace_mib": plan.workspace_mib,
        "dla_core": plan.dla_core,
        "onnx_sha256": file_sha256(onnx_path),
        "engine_sha256": file_sha256(engine_path),
        "timing_cache": None if timing_cache is None else str(timing_cache),
        "conversions": conversions,
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": utc_now(),
    }


class TrtRunner(Runner):
    """A TensorRT engine behind the runner interface, with torch CUDA buffers; active once made."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: int = 0):
        super().__init__()
        self.engine_path, self.device_index = Path(engine_path), device
        self.activate()

    def _activate(self) -> None:
        trt = require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EdgepruneError("TrtRunner needs a CUDA device visible to torch (torch.cuda.is_available() is False)")
        self.torch, self.trt = torch, trt
        self.device = torch.device("cuda", self.device_index)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise EdgepruneError(
                f"TensorRT {trt.__version__} cannot load {self.engine_path}: engines only run on the TensorRT version "
                "and GPU they were built with; rebuild it here"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise EdgepruneError(f"{self.engine_path} has inputs {inputs}: expected one image input")
        self.input_name = inputs[0]
        self.input_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(self.input_name))
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in self.outputs else self.outputs[0]
        self.stream = torch.cuda.Stream(device=self.device)

    def _dtype(self, name: str) -> Any:
        numpy_type = self.trt.nptype(self.engine.get_tensor_dtype(name))
        return self.torch.from_numpy(np.zeros(0, dtype=numpy_type)).dtype

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to(self.device, self._dtype(self.input_name))
            if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
                raise EdgepruneError(
                    f"batch shape {tuple(x.shape)} is outside the engine's optimisation profile "
                    f"{self.engine.get_tensor_profile_shape(self.input_name, 0)}"
                )
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            outputs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self._dtype(name), device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EdgepruneError("TensorRT failed to run the engine (see the TensorRT log above)")
            self.stream.synchronize()
            return outputs[self.output_name].float().cpu().numpy()

    def _close(self) -> None:
        """Release the execution context, engine and runtime (in that order) and the CUDA stream."""
        del self.context, self.engine, self.runtime, self.stream


# --------------------------------------------------------------------------------------------------------------
# Deploy bundle (no TensorRT needed)
# --------------------------------------------------------------------------------------------------------------


def _majors(profile: Profile) -> list[int]:
    assert profile.tensorrt is not None
    low = version_tuple(profile.tensorrt.version_min)[0]
    high = version_tuple(profile.tensorrt.version_max)[0]
    return [m for m in (10, 11) if low <= m <= high] or [high]


def _bundle_plans(profile: Profile, precision: str, chw: tuple[int, int, int]) -> tuple[dict[int, BuildPlan], dict]:
    """One plan per TensorRT major version the profile admits (10 and/or 11), each at a version in its range."""
    assert profile.tensorrt is not None
    high = profile.tensorrt.version_max
    plans: dict[int, BuildPlan] = {}
    refused: dict[int, str] = {}
    for major in _majors(profile):
        representative = high if version_tuple(high)[0] == major else f"{major}.99"
        try:
            plans[major] = plan_build(representative, precision, profile, chw)
        except EdgepruneError as exc:
            refused[major] = str(exc)
    if not plans:
        raise EdgepruneError(next(iter(refused.values())))
    return plans, {f"tensorrt_{m}": reason for m, reason in refused.items()}


def _version_code(version: str, upper: bool) -> int:
    """major * 1000 + minor; an upper bound without a minor ("11") admits every minor."""
    parts = version_tuple(version)
    minor = parts[1] if len(parts) > 1 else (999 if upper else 0)
    return parts[0] * 1000 + minor


def _build_script(profile: Profile, target: str, commands: dict[int, list[str]]) -> str:
    assert profile.tensorrt is not None
    trt = profile.tensorrt
    lo, hi = _version_code(trt.version_min, upper=False), _version_code(trt.version_max, upper=True)
    lines = [
        "#!/usr/bin/env bash",
        "# edgeprune deploy bundle: build the TensorRT engine on the device itself (engines are tied to the GPU",
        "# and the TensorRT version that built them).",
        f"# target {target}, profile {profile.name}: {profile.description}",
        f"# TensorRT {trt.version_min} to {trt.version_max}. Run ./build.sh in this folder; set",
        "# TRTEXEC=/path/to/trtexec when trtexec is not on PATH (JetPack puts it in /usr/src/tensorrt/bin).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if [ ! -x "$TRTEXEC" ]; then',
        '  echo "build.sh: trtexec not found (install TensorRT, or set TRTEXEC=/path/to/trtexec)" >&2',
        "  exit 2",
        "fi",
        "if command -v sha256sum >/dev/null; then sha256sum --quiet -c SHA256SUMS; fi",
        '# The version from trtexec\'s banner: "[TensorRT v100300]" is 10.3.0 (8.x wrote v8601 for 8.6.1).',
        'code="$("$TRTEXEC" --help 2>&1 | sed -n \'s/.*\\[TensorRT v\\([0-9][0-9]*\\)\\].*/\\1/p\' | head -n 1)"',
        'if [ -z "$code" ]; then',
        '  echo "build.sh: cannot read the TensorRT version from $TRTEXEC --help" >&2',
        "  exit 2",
        "fi",
        'if [ "$code" -ge 100000 ]; then major=$((code / 10000)); minor=$((code / 100 % 100));',
        "else major=$((code / 1000)); minor=$((code / 100 % 10)); fi",
        "version=$((major * 1000 + minor))",
        f'if [ "$version" -lt {lo} ] || [ "$version" -gt {hi} ]; then',
        f"  echo \"build.sh: TensorRT $major.$minor is outside this profile's range {trt.version_min} to "
        f'{trt.version_max}" >&2',
        "  exit 3",
        "fi",
    ]

    def command(major: int, indent: str) -> list[str]:
        note = "strongly typed: precision comes from the ONNX" if major >= 11 else "weakly typed: precision flags"
        args = " \\\n    ".join(shlex.quote(a) for a in commands[major])
        return [f"{indent}# TensorRT {major}.x, {note}", f'{indent}"$TRTEXEC" {args}']

    if len(commands) == 1:
        lines += command(next(iter(commands)), "")
    else:
        older, newer = sorted(commands)
        lines += [f'if [ "$major" -ge {newer} ]; then', *command(newer, "  "), "else", *command(older, "  "), "fi"]
    lines.append(f'echo "build.sh: wrote {ENGINE_FILE} with TensorRT $major.$minor"')
    return "\n".join(lines) + "\n"


def write_bundle(
    folder: Path,
    *,
    onnx_path: Path,
    target: str,
    profile: Profile,
    calibration: np.ndarray | None,
    model_sha256: str,
    onnx_sha256: str,
) -> dict[str, Any]:
    """Write a deploy bundle into `folder` (replaced atomically) and return its manifest.

    Contents: `model.onnx` (fp32), `model.fp16.onnx` (trt-fp16) or `model.int8.onnx` + `calibration.npy`
    (trt-int8, calibrated on `calibration`, which must be source-domain images only), `profile.toml`,
    `build.sh` (the trtexec commands for TensorRT 10 and 11), `SHA256SUMS` and `manifest.json`.
    `model_sha256` is the source PyTorch weights' hash; `onnx_sha256` must be `onnx_path`'s.
    """
    if target not in TRT_TARGETS:
        raise EdgepruneError(f"a deploy bundle is for TensorRT targets ({', '.join(TRT_TARGETS)}), not '{target}'")
    if profile.tensorrt is None:
        raise EdgepruneError(f"profile '{profile.name}' has no [tensorrt] section: choose a TensorRT profile")
    precision = TARGETS[target].precision
    actual = file_sha256(onnx_path)
    if actual != onnx_sha256:
        raise EdgepruneError(
            f"{onnx_path} changed since export (sha256 {actual[:12]}..., expected {onnx_sha256[:12]}...): re-run "
            "`edgeprune export`"
        )
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise EdgepruneError("trt-int8 needs calibration images (source-domain images only) for the bundle")
    chw = onnx_input_chw(onnx_path)
    if onnx_kind(onnx_path) != "fp32":
        raise EdgepruneError(f"{onnx_path.name} must be the fp32 export; the bundle derives fp16 / int8 from it")
    plans, refused = _bundle_plans(profile, precision, chw)
    details: dict[str, Any] = {}
    with atomic_dir(folder) as tmp:
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        trt_onnx = "model.onnx"
        if precision == "fp16":
            details["fp16"] = convert_fp16(onnx_path, tmp / "model.fp16.onnx")
        if precision == "int8":
            assert calibration is not None
            calibration = np.ascontiguousarray(calibration, dtype=np.float32)
            np.save(tmp / "calibration.npy", calibration)
            details["quantization"] = quantize_static_int8(onnx_path, tmp / "model.int8.onnx", calibration)
            trt_onnx = "model.int8.onnx"
        if profile.source is not None and profile.source.is_file():
            shutil.copyfile(profile.source, tmp / "profile.toml")
        else:
            atomic_write_text(tmp / "profile.toml", profile_to_toml(profile))
        commands = {}
        for major, plan in plans.items():
            onnx_file = "model.fp16.onnx" if plan.onnx_kind == "fp16" else trt_onnx
            commands[major] = trtexec_command(plan, onnx_file)
        atomic_write_text(tmp / "build.sh", _build_script(profile, target, commands))
        (tmp / "build.sh").chmod(0o755)
        hashes = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_text(tmp / "SHA256SUMS", "".join(f"{h}  {name}\n" for name, h in hashes.items()))
        manifest = {
            "edgeprune_bundle": 1,
            "created": utc_now(),
            "target": target,
            "precision": precision,
            "profile": profile.name,
            "tensorrt": {"version_min": profile.tensorrt.version_min, "version_max": profile.tensorrt.version_max},
            "input": {"name": INPUT_NAME, "shape": ["batch", *chw]},
            "output": OUTPUT_NAME,
            "batch": {"min": profile.batch.min, "opt": profile.batch.opt, "max": profile.batch.max},
            "model_sha256": model_sha256,
            "onnx_sha256": onnx_sha256,
            "files": {name: {"sha256": h, "bytes": (tmp / name).stat().st_size} for name, h in hashes.items()},
            "build": {
                f"tensorrt_{major}": "trtexec " + " ".join(shlex.quote(a) for a in cmd)
                for major, cmd in commands.items()
            },
            "engine": ENGINE_FILE,
            **({"not_buildable": refused} if refused else {}),
            **details,
        }
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def build_bundle(folder: Path) -> dict[str, Any]:
    """`edgeprune build BUNDLE` on the device: check the bundle, build `model.engine` with the installed TensorRT
    (through the Python API, with the bundle's timing cache) and write `build.json` beside it."""
    manifest = read_bundle_manifest(folder)
    changed = verify_bundle(folder)
    if changed:
        raise EdgepruneError(f"bundle {folder} has changed since it was written: {', '.join(changed)}")
    profile = read_profile_file(folder / "profile.toml")
    precision = manifest["precision"]
    major = version_tuple(str(require_tensorrt().__version__))[0]
    onnx_file = {"fp32": "model.onnx", "fp16": "model.fp16.onnx" if major >= 11 else "model.onnx"}.get(
        precision, "model.int8.onnx"
    )
    record = build_engine(
        folder / onnx_file,
        folder / manifest["engine"],
        precision=precision,
        profile=profile,
        timing_cache=folder / TIMING_CACHE_FILE,
    )
    record.update(bundle=str(folder), onnx=onnx_file, model_sha256=manifest["model_sha256"])
    atomic_write_json(folder / "build.json", record)
    return record


def read_bundle_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.exists():
        raise EdgepruneError(f"{folder} is not a deploy bundle (no manifest.json)")
    return read_json(path)


def verify_bundle(folder: Path) -> list[str]:
    """Files of the bundle whose sha256 no longer matches the manifest (empty when intact)."""
    manifest = read_bundle_manifest(folder)
    return [
        name
        for name, entry in manifest["files"].items()
        if not (folder / name).is_file() or file_sha256(folder / name) != entry["sha256"]
    ]


__all__ = [
    "BuildPlan",
    "TrtRunner",
    "build_bundle",
    "build_engine",
    "onnx_input_chw",
    "plan_build",
    "read_bundle_manifest",
    "require_tensorrt",
    "tensorrt_available",
    "tensorrt_version",
    "trtexec_command",
    "verify_bundle",
    "write_bundle",
]
