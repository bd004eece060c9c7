"""Deploy bundles: where TensorRT is missing (no NVIDIA GPU here), `write_bundle` packs what the device needs: the
ONNX files, the hardware profile, source-domain calibration images for INT8, and a `build.sh` (from
`templates/build.sh.in`) with the exact `trtexec` command for TensorRT 10 and for TensorRT 11. On the device,
`build_bundle` (`edgeprune build BUNDLE`) checks the bundle and builds its engine with the Python API.
"""

from __future__ import annotations

import re
import shlex
import shutil
import string
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.export.fp16 import convert_fp16
from edgeprune.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from edgeprune.export.quantize import quantize_static_int8
from edgeprune.export.trt_build import build_engine
from edgeprune.export.trt_common import (
    ENGINE_FILE,
    STRONGLY_TYPED_MAJOR,
    TIMING_CACHE_FILE,
    BuildPlan,
    OnnxForm,
    onnx_form,
    onnx_input_chw,
    onnx_kind,
    plan_build,
    release,
    require_tensorrt,
    strongly_typed,
    trt_target,
    trtexec_command,
)
from edgeprune.profiles import Profile, profile_to_toml, read_profile_file
from edgeprune.targets import TARGETS, Target, targets_where
from edgeprune.workspace import atomic_dir, atomic_write_json, atomic_write_text, file_sha256, read_json, utc_now

TRT_TARGETS = targets_where("tensorrt_engine")
TEMPLATE = "build.sh.in"
_SHA256 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------------------------------------------
# build.sh
# --------------------------------------------------------------------------------------------------------------


class _ScriptTemplate(string.Template):
    delimiter = "@"  # `@{name}`: bash has `$` for itself


def _majors(profile: Profile) -> list[int]:
    """The TensorRT major versions (10 and/or 11) the profile's range admits."""
    assert profile.tensorrt is not None
    low = release(profile.tensorrt.version_min)[0]
    high = release(profile.tensorrt.version_max)[0]
    return [m for m in (10, 11) if low <= m <= high] or [high]


def _bundle_plans(profile: Profile, precision: str, chw: tuple[int, int, int]) -> tuple[dict[int, BuildPlan], dict]:
    """One plan per TensorRT major version the profile admits (10 and/or 11), each at a version in its range."""
    assert profile.tensorrt is not None
    high = profile.tensorrt.version_max
    plans: dict[int, BuildPlan] = {}
    refused: dict[int, str] = {}
    for major in _majors(profile):
        representative = high if release(high)[0] == major else f"{major}.99"
        try:
            plans[major] = plan_build(representative, precision, profile, chw)
        except EdgepruneError as exc:
            refused[major] = str(exc)
    if not plans:
        raise EdgepruneError(next(iter(refused.values())))
    return plans, {f"tensorrt_{m}": reason for m, reason in refused.items()}


def _version_code(version: str, upper: bool) -> int:
    """major * 1000 + minor, as build.sh computes it from trtexec's banner; an upper bound without a minor ("11")
    admits every minor."""
    parts = release(version)
    minor = parts[1] if len(parts) > 1 else (999 if upper else 0)
    return parts[0] * 1000 + minor


def _command_lines(commands: dict[int, list[str]]) -> list[str]:
    """The trtexec call of each TensorRT major; with two, build.sh picks by the installed one."""

    def command(major: int, indent: str) -> list[str]:
        typing = "strongly typed: precision comes from the ONNX"
        note = typing if major >= STRONGLY_TYPED_MAJOR else "weakly typed: precision flags"
        args = " \\\n    ".join(shlex.quote(a) for a in commands[major])
        return [f"{indent}# TensorRT {major}.x, {note}", f'{indent}"$TRTEXEC" {args}']

    if len(commands) == 1:
        return command(next(iter(commands)), "")
    older, newer = sorted(commands)
    return [f'if [ "$major" -ge {newer} ]; then', *command(newer, "  "), "else", *command(older, "  "), "fi"]


def _profile_shape(plans: dict[int, BuildPlan]) -> str | None:
    """The opt shape the profiling run uses (`input:BxCxHxW`), or None when the engine takes one shape only."""
    low, opt, high = next(iter(plans.values())).input_shapes
    return None if low == high else f"{INPUT_NAME}:{'x'.join(str(d) for d in opt)}"


def build_script(profile: Profile, target: str, commands: dict[int, list[str]], opt_shape: str | None = None) -> str:
    """build.sh for a bundle of `target` built with `commands` (one trtexec argument list per TensorRT major); after
    the build it profiles the engine per layer at `opt_shape` (`input:1x3x224x224`; None for a fixed-shape engine)."""
    assert profile.tensorrt is not None
    trt = profile.tensorrt
    text = (resources.files("edgeprune.export") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return _ScriptTemplate(text).substitute(
        target=target,
        profile=profile.name,
        description=profile.description,
        version_min=trt.version_min,
        version_max=trt.version_max,
        version_lo=_version_code(trt.version_min, upper=False),
        version_hi=_version_code(trt.version_max, upper=True),
        commands="\n".join(_command_lines(commands)),
        engine=ENGINE_FILE,
        profile_shapes=f"--shapes={shlex.quote(opt_shape)} " if opt_shape else "",
    )


# --------------------------------------------------------------------------------------------------------------
# Writing a bundle (no TensorRT needed)
# --------------------------------------------------------------------------------------------------------------


def _check_request(
    target: str, profile: Profile, onnx_path: Path, onnx_sha256: str, model_sha256: str, calibration: Any
) -> Target:
    """The TensorRT target `target` names, once the request can make a bundle; errors say why it cannot."""
    spec = TARGETS.get(target)
    if spec is None or not spec.tensorrt_engine:
        raise EdgepruneError(f"a deploy bundle is for TensorRT targets ({', '.join(TRT_TARGETS)}), not '{target}'")
    if profile.tensorrt is None:
        raise EdgepruneError(f"profile '{profile.name}' has no [tensorrt] section: choose a TensorRT profile")
    if not _SHA256.fullmatch(model_sha256):
        raise EdgepruneError(f"model_sha256 must be the source weights' sha256 (64 hex digits), not {model_sha256!r}")
    actual = file_sha256(onnx_path)
    if actual != onnx_sha256:
        raise EdgepruneError(
            f"{onnx_path} changed since export (sha256 {actual[:12]}..., expected {onnx_sha256[:12]}...): re-run "
            "`edgeprune export`"
        )
    if spec.needs_calibration and (calibration is None or len(calibration) == 0):
        raise EdgepruneError(f"{spec.name} needs calibration images (source-domain images only) for the bundle")
    return spec


def _write_models(tmp: Path, onnx_path: Path, target: Target, calibration: np.ndarray | None) -> dict[str, Any]:
    """model.onnx (fp32) and what the target's builds derive from it: model.fp16.onnx, or model.int8.onnx quantized
    on calibration.npy. Returns the conversion details for the manifest."""
    shutil.copyfile(onnx_path, tmp / OnnxForm.FP32.file_name)
    if target.float16:
        return {"fp16": convert_fp16(onnx_path, tmp / OnnxForm.FP16.file_name)}
    if target.needs_calibration:
        assert calibration is not None
        calibration = np.ascontiguousarray(calibration, dtype=np.float32)
        np.save(tmp / "calibration.npy", calibration)
        return {"quantization": quantize_static_int8(onnx_path, tmp / OnnxForm.QDQ.file_name, calibration)}
    return {}


def _write_profile(tmp: Path, profile: Profile) -> None:
    if profile.source is not None and profile.source.is_file():
        shutil.copyfile(profile.source, tmp / "profile.toml")
    else:
        atomic_write_text(tmp / "profile.toml", profile_to_toml(profile))


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
    `model_sha256` is the source PyTorch weights' hash (recorded, and copied into the device's build.json);
    `onnx_sha256` must be `onnx_path`'s.
    """
    spec = _check_request(target, profile, onnx_path, onnx_sha256, model_sha256, calibration)
    chw = onnx_input_chw(onnx_path)
    if onnx_kind(onnx_path) is not OnnxForm.FP32:
        raise EdgepruneError(f"{onnx_path.name} must be the fp32 export; the bundle derives fp16 / int8 from it")
    plans, refused = _bundle_plans(profile, spec.precision, chw)
    commands = {major: trtexec_command(plan, plan.onnx_kind.file_name) for major, plan in plans.items()}
    with atomic_dir(folder) as tmp:
        details = _write_models(tmp, onnx_path, spec, calibration)
        _write_profile(tmp, profile)
        atomic_write_text(tmp / "build.sh", build_script(profile, spec.name, commands, _profile_shape(plans)))
        (tmp / "build.sh").chmod(0o755)
        hashes = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_text(tmp / "SHA256SUMS", "".join(f"{h}  {name}\n" for name, h in hashes.items()))
        manifest = {
            "edgeprune_bundle": 1,
            "created": utc_now(),
            "target": spec.name,
            "precision": spec.precision,
            "profile": profile.name,
            "tensorrt": {"version_min": profile.tensorrt.version_min, "version_max": profile.tensorrt.version_max},
            "input": {"name": INPUT_NAME, "shape": ["batch", *chw]},
            "output": OUTPUT_NAME,
            "batch": {"min": profile.batch.min, "opt": profile.batch.opt, "max": profile.batch.max},
            "model_sha256": model_sha256,
            "onnx_sha256": onnx_sha256,
            "files": {name: {"sha256": h, "bytes": (tmp / name).stat().st_size} for name, h in hashes.items()},
            "build": {f"tensorrt_{m}": "trtexec " + " ".join(shlex.quote(a) for a in c) for m, c in commands.items()},
            "engine": ENGINE_FILE,
            **({"not_buildable": refused} if refused else {}),
            **details,
        }
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------------------------------------
# Reading and building a bundle (on the device)
# --------------------------------------------------------------------------------------------------------------


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


def build_bundle(folder: Path) -> dict[str, Any]:
    """`edgeprune build BUNDLE` on the device: check the bundle, build `model.engine` with the installed TensorRT
    (through the Python API, with the bundle's timing cache) and write `build.json` beside it, which names the
    source model's sha256 from the manifest."""
    manifest = read_bundle_manifest(folder)
    changed = verify_bundle(folder)
    if changed:
        raise EdgepruneError(f"bundle {folder} has changed since it was written: {', '.join(changed)}")
    profile = read_profile_file(folder / "profile.toml")
    target = trt_target(manifest["precision"])
    onnx_file = onnx_form(target, strongly_typed(str(require_tensorrt().__version__))).file_name
    record = build_engine(
        folder / onnx_file,
        folder / manifest["engine"],
        precision=target.precision,
        profile=profile,
        timing_cache=folder / TIMING_CACHE_FILE,
    )
    record.update(bundle=str(folder), onnx=onnx_file, model_sha256=manifest["model_sha256"])
    atomic_write_json(folder / "build.json", record)
    return record


__all__ = ["build_bundle", "build_script", "read_bundle_manifest", "verify_bundle", "write_bundle"]
