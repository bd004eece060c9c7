"""Hardware profiles: one TOML file per target device (backend, batch range, TensorRT settings, latency gate).

A bare name (`jetson-orin-nano`) is looked up in `$EDGEPRUNE_PROFILES` (a folder), then in the repository's
`profiles/` folder, then in `<prefix>/share/edgeprune/profiles` (where a wheel installs them); anything that
ends in `.toml` or names an existing file is read as a path. Every file is validated strictly: unknown keys,
wrong types and inconsistent values are errors naming the file and the key.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import EdgepruneError
from edgeprune.targets import TARGETS, targets_where

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

PROFILES_ENV = "EDGEPRUNE_PROFILES"
REPO_PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
# Where a wheel installs them (pyproject's data-files).
INSTALLED_PROFILES_DIR = Path(sys.prefix) / "share" / "edgeprune" / "profiles"

TARGET_PRECISION: dict[str, str] = {t.name: t.precision for t in TARGETS.values()}
TENSORRT_TARGETS = targets_where("uses_tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


@dataclass(frozen=True)
class Backend:
    default_target: str
    precision: str
    threads: int | None = None  # CPU threads for the ort-cpu targets; None lets onnxruntime decide


@dataclass(frozen=True)
class BatchRange:
    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class TensorRTSettings:
    workspace_mib: int
    dla_core: int  # -1: no DLA
    version_min: str
    version_max: str

    @property
    def uses_dla(self) -> bool:
        return self.dla_core >= 0

    def accepts(self, version: str) -> bool:
        """Whether TensorRT `version` (e.g. "10.3.0.30") lies in [version_min, version_max].

        The upper bound covers every release it prefixes: "11.99" admits 11.4.1, "10" admits 10.16.
        """
        got = version_tuple(version)
        low, high = version_tuple(self.version_min), version_tuple(self.version_max)
        return _pad(got) >= _pad(low) and got[: len(high)] <= high


@dataclass(frozen=True)
class Gate:
    latency_budget_ms: float  # p50 at batch.opt
    max_accuracy_drop: float  # allowed held-out accuracy drop vs the unpruned baseline, as a fraction


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    backend: Backend
    batch: BatchRange
    gate: Gate
    tensorrt: TensorRTSettings | None = None
    source: Path | None = field(default=None, compare=False)

    @property
    def default_target(self) -> str:
        return self.backend.default_target


def version_tuple(version: str) -> tuple[int, ...]:
    """Version text as integers: "10.3.0.30" -> (10, 3, 0, 30); a non-numeric tail ("10.3.0.post1") is dropped."""
    parts = []
    for piece in version.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    if not parts:
        raise ValueError(f"not a version number: {version!r}")
    return tuple(parts)


def _pad(version: tuple[int, ...]) -> tuple[int, ...]:
    return version + (0,) * (4 - len(version))


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------

_SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {  # section -> key -> (type, required)
    "backend": {"default_target": (str, True), "precision": (str, True), "threads": (int, False)},
    "batch": {"min": (int, True), "opt": (int, True), "max": (int, True)},
    "tensorrt": {
        "workspace_mib": (int, True),
        "dla_core": (int, True),
        "version_min": (str, True),
        "version_max": (str, True),
    },
    "gate": {"latency_budget_ms": (float, True), "max_accuracy_drop": (float, True)},
}
_TOP_LEVEL = {"name": str, "description": str}
_REQUIRED_SECTIONS = ("backend", "batch", "gate")


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Checker:
    def __init__(self, path: Path):
        self.where = _display(path)

    def fail(self, message: str) -> EdgepruneError:
        return EdgepruneError(f"{self.where}: {message}")

    def value(self, table: dict[str, Any], key: str, kind: type, dotted: str, required: bool = True) -> Any:
        if key not in table:
            if required:
                raise self.fail(f"missing key '{dotted}'")
            return None
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = {str: "a string", int: "an integer", float: "a number"}[kind]
            raise self.fail(f"{dotted} must be {expected} (got {value!r})")
        return value

    def section(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        table = data[name]
        if not isinstance(table, dict):
            raise self.fail(f"'{name}' must be a table ([{name}]), got {table!r}")
        for key in table:
            if key not in _SCHEMA[name]:
                known = ", ".join(f"{name}.{k}" for k in _SCHEMA[name])
                raise self.fail(f"unknown key '{name}.{key}' (known: {known})")
        return {key: self.value(table, key, kind, f"{name}.{key}", req) for key, (kind, req) in _SCHEMA[name].items()}


def _parse(data: dict[str, Any], path: Path) -> Profile:
    check = _Checker(path)
    for key in data:
        if key not in _TOP_LEVEL and key not in _SCHEMA:
            raise check.fail(f"unknown key '{key}' (known: {', '.join([*_TOP_LEVEL, *_SCHEMA])})")
    name = check.value(data, "name", str, "name")
    description = check.value(data, "description", str, "description")
    if not _NAME.match(name):
        raise check.fail(f"name = {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    for section in _REQUIRED_SECTIONS:
        if section not in data:
            raise check.fail(f"missing section [{section}]")
    backend = check.section(data, "backend")
    batch = check.section(data, "batch")
    gate = check.section(data, "gate")
    tensorrt = check.section(data, "tensorrt") if "tensorrt" in data else None

    target, precision = backend["default_target"], backend["precision"]
    if target not in TARGET_PRECISION:
        raise check.fail(f"backend.default_target must be one of {', '.join(TARGET_PRECISION)} (got {target!r})")
    if precision not in PRECISIONS:
        raise check.fail(f"backend.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision != TARGET_PRECISION[target]:
        raise check.fail(
            f"backend.precision = {precision!r} does not match backend.default_target = {target!r}, "
            f"which runs in {TARGET_PRECISION[target]}"
        )
    if backend["threads"] is not None and backend["threads"] < 1:
        raise check.fail(f"backend.threads = {backend['threads']} must be at least 1")

    for key in ("min", "opt", "max"):
        if batch[key] < 1:
            raise check.fail(f"batch.{key} = {batch[key]} must be at least 1")
    if batch["min"] > batch["opt"]:
        raise check.fail(f"batch.min = {batch['min']} is larger than batch.opt = {batch['opt']}")
    if batch["opt"] > batch["max"]:
        raise check.fail(f"batch.opt = {batch['opt']} is larger than batch.max = {batch['max']}")

    if not gate["latency_budget_ms"] > 0:
        raise check.fail(f"gate.latency_budget_ms = {gate['latency_budget_ms']} must be positive")
    if not 0.0 <= gate["max_accuracy_drop"] <= 1.0:
        raise check.fail(
            f"gate.max_accuracy_drop = {gate['max_accuracy_drop']} must be a fraction between 0 and 1 (0.02 = 2 points)"
        )

    trt = None
    if tensorrt is None:
        if target in TENSORRT_TARGETS:
            raise check.fail(f"backend.default_target = {target!r} needs a [tensorrt] section")
    else:
        trt = _tensorrt_settings(tensorrt, batch, precision, check)
    return Profile(
        name=name,
        description=description,
        backend=Backend(**backend),
        batch=BatchRange(**batch),
        gate=Gate(**gate),
        tensorrt=trt,
        source=path,
    )


def _tensorrt_settings(table: dict[str, Any], batch: dict[str, int], precision: str, check: _Checker):
    if table["workspace_mib"] < 1:
        raise check.fail(f"tensorrt.workspace_mib = {table['workspace_mib']} must be at least 1")
    if table["dla_core"] < -1:
        raise check.fail(f"tensorrt.dla_core = {table['dla_core']} must be -1 (no DLA) or a DLA core number (0, 1)")
    for key in ("version_min", "version_max"):
        if not _VERSION.match(table[key]):
            raise check.fail(f'tensorrt.{key} = {table[key]!r} is not a version number like "10.3"')
    if _pad(version_tuple(table["version_min"])) > _pad(version_tuple(table["version_max"])):
        raise check.fail(
            f"tensorrt.version_min = {table['version_min']!r} is newer than tensorrt.version_max = "
            f"{table['version_max']!r}"
        )
    if table["dla_core"] >= 0:
        if precision == "fp32":
            raise check.fail(
                f"tensorrt.dla_core = {table['dla_core']} needs backend.precision fp16 or int8: the DLA has no fp32"
            )
        if not batch["min"] == batch["opt"] == batch["max"]:
            raise check.fail(
                f"tensorrt.dla_core = {table['dla_core']} needs a fixed batch (batch.min = batch.opt = batch.max): "
                f"the DLA does not support dynamic shapes (got {batch['min']}/{batch['opt']}/{batch['max']})"
            )
    return TensorRTSettings(**table)


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------


def profile_dirs() -> list[Path]:
    """Folders searched for `<name>.toml`, in order: $EDGEPRUNE_PROFILES, the repository's profiles/ (a source
    checkout or an editable install), then <prefix>/share/edgeprune/profiles (a wheel's data files)."""
    dirs = []
    env = os.environ.get(PROFILES_ENV)
    if env:
        dirs.append(Path(env))
    dirs += [REPO_PROFILES_DIR, INSTALLED_PROFILES_DIR]
    return [d for d in dirs if d.is_dir()]


def _known_names() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.toml")})


def read_profile_file(path: Path) -> Profile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgepruneError(f"profile file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgepruneError(f"{_display(path)}: cannot read the profile ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EdgepruneError(f"{_display(path)}: invalid TOML: {exc}") from None
    return _parse(data, path)


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by bare name (`jetson-orin-nano`) or by path to a `.toml` file."""
    text = str(name_or_path)
    candidate = Path(text)
    if text.endswith(".toml") or candidate.is_file() or os.sep in text:
        return read_profile_file(candidate)
    for folder in profile_dirs():
        path = folder / f"{text}.toml"
        if path.is_file():
            profile = read_profile_file(path)
            if profile.name != text:
                raise EdgepruneError(f"{_display(path)}: name = {profile.name!r} differs from the file name {text!r}")
            return profile
    known = ", ".join(_known_names())
    if not known:
        raise EdgepruneError(
            f"unknown profile '{text}': no profiles folder found (looked in ${PROFILES_ENV}, {REPO_PROFILES_DIR} and "
            f"{INSTALLED_PROFILES_DIR}); give a path to a .toml file or set {PROFILES_ENV} to a folder of profiles"
        )
    raise EdgepruneError(f"unknown profile '{text}': choose one of {known}, or give a path to a .toml file")


def list_profiles() -> list[Profile]:
    """Every profile found (a name in $EDGEPRUNE_PROFILES hides the repository's file of the same name)."""
    return [load_profile(name) for name in _known_names()]


def profile_to_toml(profile: Profile) -> str:
    """The profile as TOML text that `load_profile` reads back to an equal Profile."""

    def fmt(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(value)

    lines = [f"name = {fmt(profile.name)}", f"description = {fmt(profile.description)}"]
    sections: list[tuple[str, Any]] = [("backend", profile.backend), ("batch", profile.batch)]
    if profile.tensorrt is not None:
        sections.append(("tensorrt", profile.tensorrt))
    sections.append(("gate", profile.gate))
    for title, obj in sections:
        lines += ["", f"[{title}]"]
        lines += [f"{key} = {fmt(getattr(obj, key))}" for key in _SCHEMA[title] if getattr(obj, key) is not None]
    return "\n".join(lines) + "\n"
