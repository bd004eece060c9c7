"""A latency table: probes measured on one profile's backend, the fitted model, its error, and the conditions it
was measured under (its key). A table measured under other conditions than a profile asks for is refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.latency.fit import TERMS, model_terms
from edgeprune.latency.widths import Widths
from edgeprune.profiles import Profile
from edgeprune.results import Result
from edgeprune.targets import TARGETS, Target

TABLE_FORMAT = 1
TABLES_DIR = "latency-tables"


class TableKey(Result):
    """Everything a latency depends on besides the widths: two tables with equal keys measure the same thing."""

    model: str  # timm name: family, patch size, image size, depth and full widths follow from it
    family: str
    image_size: list[int]
    depth: int
    full: dict[str, int]  # the unpruned block widths
    profile: str
    target: str
    backend: str
    backend_version: str | None
    batch: int
    threads: int | None  # what the profile asks for
    threads_used: int | None  # what ran (capped at this machine's cores)
    device: str  # the CPU's ISA and model, or the GPU
    round_to: int = 8  # the probes' widths are multiples of it
    # the onnxruntime operator the target's build fuses attention into; None where it fuses none (tables from before
    # the field: MultiHeadAttention)
    fused_attention: str | None = "MultiHeadAttention"


class Probe(Result):
    depth: int
    widths: dict[str, int]
    p50_ms: float
    held_out: bool  # kept out of the fit, to measure its error


class FitError(Result):
    held_out_points: int
    median_pct: float  # |predicted / measured - 1| on the held-out probes, in percent
    max_pct: float
    fit_median_pct: float  # the same on the probes it was fitted to


class Reference(Result):
    """The unpruned model measured whole, against the fit's prediction: the scale that predictions take."""

    p50_ms: float
    fitted_ms: float


class LatencyTable(Result):
    edgeprune_latency_table: int = TABLE_FORMAT
    key: TableKey
    created: str
    seconds: float
    command: str
    terms: list[str]
    coefficients: list[float]
    probes: list[Probe]
    error: FitError
    reference: Reference

    @property
    def scale(self) -> float:
        return self.reference.p50_ms / self.reference.fitted_ms

    def predict_ms(self, blocks: Sequence[Widths]) -> float:
        """Latency of a model with these blocks (the fixed parts at the first block's embedding width)."""
        if list(self.terms) != list(TERMS):
            raise EdgepruneError(f"latency table of another edgeprune version (terms {self.terms}): build it again")
        embed = blocks[0].embed if blocks else self.key.full["embed"]
        return float(model_terms(embed, blocks) @ np.asarray(self.coefficients)) * self.scale

    def unit_latency(self, blocks: Sequence[Widths]) -> tuple[float, list[dict[str, float]]]:
        """ms that one unit saves at these widths: an embedding channel, and per block an MLP hidden channel and an
        attention channel (one head dim of one head)."""
        c = dict(zip(self.terms, self.coefficients, strict=True))
        attention = [c["embed x attention"] * b.embed + c["attention"] for b in blocks]
        mlp = [c["embed x mlp"] * b.embed + c["mlp"] for b in blocks]
        embedding = c["fixed: embed"] + sum(
            c["embed x attention"] * b.attention + c["embed x mlp"] * b.mlp + c["embed"] for b in blocks
        )
        per_block = [{"attention": a * self.scale, "mlp": m * self.scale} for a, m in zip(attention, mlp, strict=True)]
        return embedding * self.scale, per_block

    @property
    def unpruned_ms(self) -> float:
        return self.reference.p50_ms

    def describe(self) -> str:
        k = self.key
        return (
            f"{k.model} on {k.target} (profile {k.profile}, batch {k.batch}, {k.threads_used or 'default'} threads, "
            f"{k.backend} {k.backend_version}, {k.device})"
        )


def table_path(workspace_root: Path, model: str, profile: Profile, target: Target) -> Path:
    return workspace_root / TABLES_DIR / f"{model}--{profile.name}--{target.name}.json"


def mismatches(table: LatencyTable, wanted: TableKey, profile: Profile) -> list[str]:
    """How `table` differs from what `profile` needs for `wanted` (empty: the table applies)."""
    have, problems = table.key, []
    for field in ("model", "target", "batch", "threads", "image_size", "full"):
        if getattr(have, field) != getattr(wanted, field):
            problems.append(f"{field} {getattr(have, field)} (needed: {getattr(wanted, field)})")
    if profile.latency.round_to % have.round_to:
        problems.append(f"widths measured in multiples of {have.round_to} (profile: {profile.latency.round_to})")
    if not profile.latency.accepts(have.backend_version):
        problems.append(
            f"{have.backend} {have.backend_version} (profile {profile.name} needs {profile.latency.backend_version})"
        )
    if TARGETS[wanted.target].onnxruntime_cpu and wanted.device != have.device:  # pruning measures the result here
        problems.append(f"measured on {have.device} (this machine: {wanted.device})")
    if TARGETS[wanted.target].fuses_attention and wanted.fused_attention != have.fused_attention:
        fused, needed = have.fused_attention, wanted.fused_attention
        problems.append(f"attention fused as {fused} (this version fuses it as {needed})")
    return problems


def load_table(path: Path, wanted: TableKey, profile: Profile) -> LatencyTable:
    """The table at `path`, refused (one line naming each difference) when measured other than `profile` needs."""
    try:
        table = LatencyTable.read(path)
    except FileNotFoundError:
        raise EdgepruneError(f"latency table {path} does not exist") from None
    except (ValueError, KeyError) as exc:
        raise EdgepruneError(f"latency table {path} is not readable ({exc}): build it again") from None
    problems = mismatches(table, wanted, profile)
    if problems:
        raise EdgepruneError(
            f"latency table {path} was measured for other conditions than profile {profile.name} needs: "
            + "; ".join(problems)
            + f". Measure one here: edgeprune latency-table --model {wanted.model} --profile {profile.name} "
            f"--target {wanted.target} --force"
        )
    return table
