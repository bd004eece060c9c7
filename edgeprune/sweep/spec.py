"""What a sweep asks for: the grid (models x metrics x amounts x held-out domains x seeds), the targets, and the
training settings every cell shares. Read from a TOML file and/or the command line (flags override the file).

Importable without torch, so `edgeprune sweep --help` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from edgeprune.config import METRICS, Amount
from edgeprune.errors import EdgepruneError
from edgeprune.requests import PruneRequest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

ALL_DOMAINS = "all"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# PruneRequest fields that the grid or a top-level key of the spec decides: not settable in [prune].
_OWNED = {
    "model", "metric", "ratio", "target_macs", "target_params", "target_domain", "seed", "baseline_run", "data",
    "baseline_epochs", "epochs", "max_steps_per_epoch", "workers", "random_init",
}  # fmt: skip
PRUNE_TABLE_KEYS = sorted({f.name for f in fields(PruneRequest)} - _OWNED)
_NOT_IDENTITY = {"name", "workers"}  # keys that may differ when a sweep is continued


class SweepSpec(BaseModel):
    """A sweep's settings; `identity()` is what must match for a later invocation to continue it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    models: list[str]
    metrics: list[str] = ["hessian"]
    ratios: list[float] = []
    target_macs: list[float] = []
    domains: list[str] = [ALL_DOMAINS]
    seeds: list[int] = [0]
    targets: list[str] = ["ort-cpu"]
    profile: str | None = None
    data: str | None = None  # default: the built-in data set
    random_init: bool = PruneRequest.random_init
    baseline_epochs: int | None = PruneRequest.baseline_epochs
    epochs: int = PruneRequest.epochs
    max_steps_per_epoch: int | None = PruneRequest.max_steps_per_epoch
    workers: int = PruneRequest.workers
    prune: dict[str, Any] = {}  # any other PruneRequest option (lr, batch_size, calib_batches, checkpoint, ...)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(f"name {value!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
        return value

    @field_validator("models", "metrics", "domains", "seeds", "targets")
    @classmethod
    def _not_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("needs at least one value")
        return list(dict.fromkeys(value))  # each once, in the order given

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}: choose from {', '.join(METRICS)}")
        return value

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        from edgeprune.targets import resolve_target

        for name in value:
            resolve_target(name)
        return value

    @field_validator("prune")
    @classmethod
    def _prune(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(PRUNE_TABLE_KEYS))
        if unknown:
            raise ValueError(f"unknown prune option(s) {', '.join(unknown)} (known: {', '.join(PRUNE_TABLE_KEYS)})")
        return value

    @model_validator(mode="after")
    def _amounts(self) -> SweepSpec:
        if not self.ratios and not self.target_macs:
            self.ratios = [PruneRequest.ratio]
        self.ratios = list(dict.fromkeys(self.ratios))
        self.target_macs = list(dict.fromkeys(self.target_macs))
        self.amounts()  # each in range, or a ValueError naming the option
        if self.epochs < 0 or (self.baseline_epochs or 0) < 0:
            raise ValueError("epochs and baseline_epochs must be 0 or more")
        return self

    def amounts(self) -> list[Amount]:
        try:
            return [Amount.choose(r) for r in self.ratios] + [Amount.choose(0.5, m) for m in self.target_macs]
        except EdgepruneError as exc:
            raise ValueError(str(exc)) from None

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=_NOT_IDENTITY)

    def default_name(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        return f"sweep-{digest[:8]}"


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(SweepSpec.model_fields)
        return f"unknown key '{key}' (known: {known})"
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return f"{key}: {message}" if key else message


def read_spec_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EdgepruneError(f"sweep spec {path} does not exist: give a TOML file, or use the flags alone")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EdgepruneError(f"{path} is not valid TOML: {exc}") from None


def load_spec(path: Path | None, overrides: dict[str, Any]) -> SweepSpec:
    """The spec from `path` (TOML) with `overrides` (the flags given, None values left out) on top; the prune
    table is merged key by key.

    The name defaults to the file's stem, else to a hash of the settings: the same command continues the same sweep.
    """
    values = read_spec_file(path) if path is not None else {}
    prune = {**values.get("prune", {}), **(overrides.get("prune") or {})}  # --set overrides the file's keys one by one
    values.update({k: v for k, v in overrides.items() if v is not None})
    if prune:
        values["prune"] = prune
    if path is not None and values.get("name") is None:
        values["name"] = path.stem
    if values.get("data") is not None:
        values["data"] = str(Path(values["data"]).expanduser().resolve())
    where = f"{path}: " if path is not None else ""
    if not values.get("models"):
        raise EdgepruneError(f"{where}give the models to sweep: --models deit-tiny,vit-micro (or models = [...])")
    try:
        spec = SweepSpec.model_validate(values)
    except ValidationError as exc:
        problems = dict.fromkeys(_describe(e) for e in exc.errors())
        raise EdgepruneError("; ".join(f"{where}{p}" for p in problems)) from None
    if spec.name is None:
        spec.name = spec.default_name()
    return spec
