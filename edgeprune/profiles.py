"""Hardware profiles: one TOML file per target device (backend, batch range, TensorRT settings, latency gate).

A bare name (`jetson-orin-nano`) is looked up in `$EDGEPRUNE_PROFILES` (a folder), then in the repository's
`profiles/` folder, then in `<prefix>/share/edgeprune/profiles` (where a wheel installs them); anything that
ends in `.toml` or names an existing file is read as a path. Every file is validated strictly by pydantic: unknown
keys, wrong types and inconsistent values are errors naming the file and the key.

The sections are frozen pydantic dataclasses, so `dataclasses.replace` works on them (and validates again).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import (
    ConfigDict,
    Strict,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from edgeprune.errors import EdgepruneError
from edgeprune.targets import PRECISIONS, TARGETS, targets_where

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

PROFILES_ENV = "EDGEPRUNE_PROFILES"
REPO_PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
# Where a wheel installs them (pyproject's data-files).
INSTALLED_PROFILES_DIR = Path(sys.prefix) / "share" / "edgeprune" / "profiles"

TENSORRT_TARGETS = targets_where("uses_tensorrt")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_STRICT = ConfigDict(extra="forbid")  # no unknown keys (and StrictInt & co: no "4" for 4, no true for 1)
Number = Annotated[float, Strict()]  # a TOML integer or float (read as a float), never a bool or a string


def _require(ok: bool, message: str) -> None:
    """A broken rule: pydantic reports it (as a value_error) with the other errors of the file."""
    if not ok:
        raise ValueError(message)


CPU_ISAS = ("avx2", "avx512", "avx512-vnni", "arm64", "arm64-dotprod")  # as hardware.cpu_isa names them


@dataclass(frozen=True, config=_STRICT)
class Backend:
    default_target: StrictStr
    precision: StrictStr
    threads: StrictInt | None = None  # CPU threads for the ort-cpu targets; None lets onnxruntime decide
    isa: StrictStr | None = None  # the CPU's vector ISA the profile was made for (CPU_ISAS); checked when building

    @model_validator(mode="after")
    def _check(self) -> Backend:
        target, precision = self.default_target, self.precision
        _require(target in TARGETS, f"backend.default_target must be one of {', '.join(TARGETS)} (got {target!r})")
        _require(
            precision in PRECISIONS, f"backend.precision must be one of {', '.join(PRECISIONS)} (got {precision!r})"
        )
        runs_in = TARGETS[target].precision
        _require(
            precision == runs_in,
            f"backend.precision = {precision!r} does not match backend.default_target = {target!r}, which runs in "
            f"{runs_in}",
        )
        _require(self.threads is None or self.threads >= 1, f"backend.threads = {self.threads} must be at least 1")
        _require(
            self.isa is None or self.isa in CPU_ISAS,
            f"backend.isa must be one of {', '.join(CPU_ISAS)} (got {self.isa!r})",
        )
        return self


@dataclass(frozen=True, config=_STRICT)
class BatchRange:
    min: StrictInt
    opt: StrictInt
    max: StrictInt

    @model_validator(mode="after")
    def _check(self) -> BatchRange:
        for key in ("min", "opt", "max"):
            _require(getattr(self, key) >= 1, f"batch.{key} = {getattr(self, key)} must be at least 1")
        _require(self.min <= self.opt, f"batch.min = {self.min} is larger than batch.opt = {self.opt}")
        _require(self.opt <= self.max, f"batch.opt = {self.opt} is larger than batch.max = {self.max}")
        return self

    @property
    def fixed(self) -> bool:
        return self.min == self.opt == self.max


def _release(text: str) -> tuple[int, ...] | None:
    """The release numbers of a plain version ("10.3" -> (10, 3)); None for anything else (a pre-release too)."""
    try:
        version = Version(text)
    except InvalidVersion:
        return None
    plain = not (version.epoch or version.pre or version.post or version.dev or version.local)
    return version.release if plain else None


@dataclass(frozen=True, config=_STRICT)
class TensorRTSettings:
    workspace_mib: StrictInt
    dla_core: StrictInt  # -1: no DLA
    version_min: StrictStr
    version_max: StrictStr

    @model_validator(mode="after")
    def _check(self) -> TensorRTSettings:
        _require(self.workspace_mib >= 1, f"tensorrt.workspace_mib = {self.workspace_mib} must be at least 1")
        _require(
            self.dla_core >= -1, f"tensorrt.dla_core = {self.dla_core} must be -1 (no DLA) or a DLA core number (0, 1)"
        )
        for key in ("version_min", "version_max"):
            value = getattr(self, key)
            _require(_release(value) is not None, f'tensorrt.{key} = {value!r} is not a version number like "10.3"')
        _require(
            Version(self.version_min) <= Version(self.version_max),
            f"tensorrt.version_min = {self.version_min!r} is newer than tensorrt.version_max = {self.version_max!r}",
        )
        return self

    @property
    def uses_dla(self) -> bool:
        return self.dla_core >= 0

    @property
    def specifier(self) -> SpecifierSet:
        """[version_min, version_max] as a PEP 440 range; the upper bound covers every release it prefixes, so
        10.3 to 11.99 is ">=10.3,<11.100" and 10 to 10 is ">=10,<11"."""
        high = _release(self.version_max)
        assert high is not None  # validated
        above = ".".join(str(n) for n in (*high[:-1], high[-1] + 1))
        return SpecifierSet(f">={Version(self.version_min)},<{above}")

    def accepts(self, version: str) -> bool:
        """Whether TensorRT `version` (e.g. "10.3.0.30") lies in [version_min, version_max].

        The upper bound covers every release it prefixes: "11.99" admits 11.4.1, "10" admits 10.16. Post-releases
        are in when their release is; pre-releases of the bounds are out. A malformed `version` is a ValueError.
        """
        return self.specifier.contains(Version(version.strip()), prereleases=True)


@dataclass(frozen=True, config=_STRICT)
class Gate:
    latency_budget_ms: Number  # p50 at batch.opt
    max_accuracy_drop: Number  # allowed held-out accuracy drop vs the unpruned baseline, as a fraction

    @model_validator(mode="after")
    def _check(self) -> Gate:
        budget, drop = self.latency_budget_ms, self.max_accuracy_drop
        _require(budget > 0, f"gate.latency_budget_ms = {budget} must be positive")
        _require(
            0.0 <= drop <= 1.0, f"gate.max_accuracy_drop = {drop} must be a fraction between 0 and 1 (0.02 = 2 points)"
        )
        return self


@dataclass(frozen=True, config=_STRICT)
class LatencySettings:
    """What pruning to a latency takes from the profile: the alignment of pruned widths, and which backend
    versions a latency table may have been measured with (a PEP 440 range, e.g. ">=1.20")."""

    round_to: StrictInt = 8  # latency tables are measured at multiples of it, and pruned widths kept so
    backend_version: StrictStr | None = None

    @model_validator(mode="after")
    def _check(self) -> LatencySettings:
        _require(self.round_to >= 1, f"latency.round_to = {self.round_to} must be at least 1")
        if self.backend_version is not None:
            try:
                SpecifierSet(self.backend_version)
            except InvalidSpecifier:
                _require(False, f"latency.backend_version = {self.backend_version!r} is not a range like '>=1.20'")
        return self

    def accepts(self, version: str | None) -> bool:
        if self.backend_version is None:
            return True
        return version is not None and SpecifierSet(self.backend_version).contains(version, prereleases=True)


@dataclass(frozen=True, config=_STRICT, kw_only=True)  # keyword-only: [tensorrt] can come before [gate]
class Profile:
    name: StrictStr
    description: StrictStr
    backend: Backend
    batch: BatchRange
    tensorrt: TensorRTSettings | None = None
    gate: Gate
    latency: LatencySettings = dataclasses.field(default_factory=LatencySettings)
    source: Path | None = dataclasses.field(default=None, compare=False)  # the file read; never a key in it

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        _require(bool(_NAME.match(name)), f"name = {name!r} must be lower-case letters, digits, '.', '_' or '-'")
        return name

    @model_validator(mode="after")
    def _check(self) -> Profile:
        target, trt = TARGETS[self.backend.default_target], self.tensorrt
        if trt is None:
            _require(not target.uses_tensorrt, f"backend.default_target = {target.name!r} needs a [tensorrt] section")
        elif trt.uses_dla:
            _require(
                target.reduced_precision,
                f"tensorrt.dla_core = {trt.dla_core} needs backend.precision fp16 or int8: the DLA has no fp32",
            )
            batch = self.batch
            _require(
                batch.fixed,
                f"tensorrt.dla_core = {trt.dla_core} needs a fixed batch (batch.min = batch.opt = batch.max): the DLA "
                f"does not support dynamic shapes (got {batch.min}/{batch.opt}/{batch.max})",
            )
        return self

    @property
    def default_target(self) -> str:
        return self.backend.default_target


_PROFILE = TypeAdapter(Profile)
_SECTIONS: dict[str, type] = {
    "backend": Backend,
    "batch": BatchRange,
    "tensorrt": TensorRTSettings,
    "gate": Gate,
    "latency": LatencySettings,
}
_FILE_KEYS = tuple(f.name for f in dataclasses.fields(Profile) if f.name != "source")
_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number"}


def version_tuple(version: str) -> tuple[int, ...]:
    """The release numbers of a version: "10.3.0.30" -> (10, 3, 0, 30); a pre-, post- or local part is dropped
    ("10.3.0.post1" -> (10, 3, 0))."""
    try:
        return Version(version.strip()).release
    except InvalidVersion:
        raise ValueError(f"not a version number: {version!r}") from None


# --------------------------------------------------------------------------------------------------------------
# Validation errors, in the file's words
# --------------------------------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _known_keys(section: tuple[Any, ...]) -> str:
    if not section:
        return ", ".join(_FILE_KEYS)
    cls = _SECTIONS.get(str(section[0]))
    keys = [f.name for f in dataclasses.fields(cls)] if len(section) == 1 and cls else []
    return ", ".join(f"{section[0]}.{key}" for key in keys) or "none"


def _describe(error: Any) -> str:
    """One pydantic error as the key it is about and what is wrong with it."""
    loc, kind, got = tuple(error["loc"]), error["type"], error.get("input")
    key = ".".join(str(part) for part in loc)
    if kind == "value_error":  # a rule of a section or of the profile: its message names its keys
        return str(error["ctx"]["error"])
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown key '{key}' (known: {_known_keys(loc[:-1])})"
    if kind == "missing":
        return f"missing section [{key}]" if key in _SECTIONS else f"missing key '{key}'"
    if kind in ("dataclass_type", "dataclass_args_type"):
        return f"'{key}' must be a table ([{key}]), got {got!r}"
    if kind in _EXPECTED:
        return f"{key} must be {_EXPECTED[kind]} (got {got!r})"
    return f"{key or 'the profile'}: {error['msg']}"


def _parse(data: dict[str, Any], path: Path) -> Profile:
    where = _display(path)
    if "source" in data:  # a field of Profile, filled from the path below: never read from the file
        raise EdgepruneError(f"{where}: unknown key 'source' (known: {_known_keys(())})")
    try:
        return _PROFILE.validate_python({**data, "source": path})
    except ValidationError as exc:
        problems = dict.fromkeys(_describe(error) for error in exc.errors())  # in the schema's order, each once
        raise EdgepruneError("\n".join(f"{where}: {problem}" for problem in problems)) from None


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


def profile_names() -> list[str]:
    """The names `load_profile` finds, sorted (cheap: a directory listing, no file is read)."""
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


def _is_path(text: str) -> bool:
    return text.endswith(".toml") or os.sep in text or Path(text).is_file()


def find_profile(name_or_path: str | Path) -> Path:
    """The file of a profile given by bare name (`jetson-orin-nano`) or by path; nothing is read (cheap enough
    to check an option)."""
    text = str(name_or_path)
    if _is_path(text):
        if not Path(text).is_file():
            raise EdgepruneError(f"profile file {text} does not exist")
        return Path(text)
    for folder in profile_dirs():
        path = folder / f"{text}.toml"
        if path.is_file():
            return path
    known = ", ".join(profile_names())
    if not known:
        raise EdgepruneError(
            f"unknown profile '{text}': no profiles folder found (looked in ${PROFILES_ENV}, {REPO_PROFILES_DIR} and "
            f"{INSTALLED_PROFILES_DIR}); give a path to a .toml file or set {PROFILES_ENV} to a folder of profiles"
        )
    raise EdgepruneError(f"unknown profile '{text}': choose one of {known}, or give a path to a .toml file")


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by bare name (`jetson-orin-nano`) or by path to a `.toml` file."""
    path = find_profile(name_or_path)
    profile = read_profile_file(path)
    text = str(name_or_path)
    if not _is_path(text) and profile.name != text:
        raise EdgepruneError(f"{_display(path)}: name = {profile.name!r} differs from the file name {text!r}")
    return profile


def list_profiles() -> list[Profile]:
    """Every profile found (a name in $EDGEPRUNE_PROFILES hides the repository's file of the same name)."""
    return [load_profile(name) for name in profile_names()]


def profile_to_toml(profile: Profile) -> str:
    """The profile as TOML text that `load_profile` reads back to an equal Profile."""
    data = _PROFILE.dump_python(profile, mode="json", exclude={"source"}, exclude_none=True)
    return tomli_w.dumps({key: value for key, value in data.items() if value != {}})  # no empty [latency]


def profile_to_json(profile: Profile) -> dict[str, Any]:
    """The profile's keys (as in its TOML file) and `source`, the file it was read from."""
    data = _PROFILE.dump_python(profile, mode="json", exclude_none=True)
    return {key: value for key, value in data.items() if value != {}}
