"""What each stage produces, as typed objects with the JSON keys of DESIGN.md.

`from_json` reads what `to_json` wrote (and what earlier versions wrote: unknown keys are kept, so a report read
and written back loses nothing). The pipeline builds these, `workspace.Run` hands them out by name, and the CLI and
`scripts/` render them: nobody else knows a file name or a key.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from edgeprune.workspace import atomic_write_json, read_json

R = TypeVar("R", bound="Result")


class Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        # Only what was set: a key absent when read (or not given when built) stays absent.
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        return cls.model_validate(data)

    @classmethod
    def read(cls: type[R], path: Path) -> R:
        return cls.from_json(read_json(path))

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())


@dataclass(frozen=True)
class Tolerance:
    min_top1_agreement: float
    max_abs_diff: float | None = None  # None: not judged (reduced precision moves logits by design)


class Comparison(Result):
    """A candidate's logits against its reference's on the same images (parity.json, agreement records)."""

    samples: int = 0
    top1_agreement: float = 0.0
    max_abs_diff: float = 0.0
    mean_abs_diff: float = 0.0

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What breaks `tolerance`, in words (empty when it holds)."""
        reasons = []
        if self.top1_agreement < tolerance.min_top1_agreement:
            reasons.append(f"top-1 agreement {self.top1_agreement:.4f} < {tolerance.min_top1_agreement}")
        if tolerance.max_abs_diff is not None and self.max_abs_diff > tolerance.max_abs_diff:
            reasons.append(f"max |diff| {self.max_abs_diff:.2e} > {tolerance.max_abs_diff:g}")
        return reasons


class BeforeAfter(Result):
    before: int
    after: int

    @property
    def kept(self) -> float:
        return self.after / self.before


class UnitCount(BeforeAfter):
    removed_fraction: float


class Achieved(Result):
    macs_kept: float
    params_kept: float
    units_removed: float | None = None  # absent from reports of edgeprune before the global unit budget


class Widths(Result):
    embed_dim: int
    heads: int
    head_dim: int
    mlp_hidden: int


class BlockChange(Result):
    index: int
    before: Widths
    after: Widths


class LatencyAttempt(Result):
    aim_ms: float  # the latency the table was asked for
    predicted_ms: float
    measured_ms: float | None  # None where the target cannot run here
    # --target-speedup: the unpruned model measured beside it, so that the speed-up is one of a single moment
    unpruned_measured_ms: float | None = None
    # every reading of this model, as the latency it counts as (a speed-up goal: the table's unpruned latency over
    # the speed-up); the first is its own measurement, the others were taken beside later attempts
    counted_ms: list[float] = []

    @property
    def counts_as_ms(self) -> float | None:
        return statistics.median(self.counted_ms) if self.counted_ms else None

    @property
    def speedup(self) -> float | None:
        if self.measured_ms is None or self.unpruned_measured_ms is None:
            return None
        return self.unpruned_measured_ms / self.measured_ms


class LatencyOutcome(Result):
    """Pruning to a latency: the goal, the table's prediction and the pruned model measured on the target."""

    goal_ms: float
    asked: str  # "--target-latency 40" or "--target-speedup 2"
    target: str
    profile: str
    batch: int
    threads: int | None
    table: str  # its path
    table_error_pct: float  # the table's median error on its held-out probes
    unpruned_ms: float  # the unpruned model, measured whole when the table was made
    predicted_ms: float
    measured_ms: float | None
    speedup: float | None = None  # --target-speedup: measured beside the unpruned model
    counted_ms: float | None = None  # the latency the kept attempt counts as: the median of its readings
    attempts: list[LatencyAttempt]


class PruneReport(Result):
    """pruned/prune_report.json: what was asked, how it was decided, and what came out."""

    model: str
    family: str
    metric: str
    ratio: float  # the fraction of units removed (achieved; see `requested` for what was asked)
    requested: dict[str, float | None]
    prune_heads: bool
    whole_heads: bool = False
    round_to: int | None
    # Absent from reports written before the global unit budget, which always used mean normalisation.
    normalization: str = "mean"
    max_share: float | None = None
    cost_exponent: float | None = None  # with normalization cost; reports before it: 1
    compensated: bool = False
    compensation: str | None = None  # how, when compensated; reports before it had the mean only
    floors: dict[str, int] | None = None
    calibration_samples: int
    macs: BeforeAfter
    params: BeforeAfter
    units: UnitCount | None = None
    achieved: Achieved
    blocks: list[BlockChange]
    steps: list[dict[str, Any]] | None = None  # per step, when pruned in several
    latency: LatencyOutcome | None = None  # when pruned to a latency


DOMINANT_SHARE = 0.5  # a model that gives one class to more than this share of the images is flagged


class PredictionSpread(Result):
    """How a model's top-1 predictions on a set of images spread over the classes."""

    top_class: str  # the most-predicted class
    top_share: float  # the share of the images given that class
    classes_predicted: int  # how many classes it predicts at all

    @classmethod
    def of(cls, preds: Sequence[int], classes: Sequence[str]) -> PredictionSpread:
        counts = [0] * len(classes)
        for p in preds:
            counts[int(p)] += 1
        top = max(range(len(classes)), key=counts.__getitem__)
        return cls(
            top_class=classes[top],
            top_share=counts[top] / max(1, len(preds)),
            classes_predicted=sum(1 for c in counts if c),
        )

    @property
    def dominated(self) -> bool:
        return self.top_share > DOMINANT_SHARE

    def describe(self) -> str:
        return f"{self.top_class} {self.top_share:.0%}"


class StageMetrics(Result):
    """<stage>/metrics.json."""

    held_out_domain: str
    held_out_accuracy: float | None = None  # None: not evaluated (`not_evaluated` says why)
    source_val_accuracy: float | None = None
    evaluated_images: dict[str, int] | None = None  # images per split: {"source_val": n, "held_out": m}
    not_evaluated: str | None = None
    chance_accuracy: float | None = None  # 1 / number of classes (absent from metrics written before it was)
    held_out_spread: PredictionSpread | None = None


class ParityReport(Result):
    """export/parity.json: each exported ONNX against its torch model on held-out images."""

    tolerance: dict[str, float | None]
    domain: str
    model: Comparison
    baseline: Comparison
    passed: bool


class EngineRecord(Result):
    path: str  # relative to the run folder
    sha256: str | None = None
    bundle: str | None = None  # a deploy bundle's folder, where TensorRT builds on the device


class BuildRecord(Result):
    """engines/<target>/build.json."""

    target: str
    profile: str
    engines: dict[str, EngineRecord]
    model_sha256: dict[str, str]
    quantization: dict[str, dict[str, Any]] | None = None
    bundles: dict[str, dict[str, Any]] | None = None
    float16: dict[str, dict[str, Any]] | None = None
    cpu_graph: dict[str, dict[str, Any]] | None = None  # ort-cpu: fused attention or not, as measured
    note: str | None = None

    def location(self, name: str) -> str:
        engine = self.engines[name]
        return engine.bundle or engine.path

    def agreements(self) -> list[tuple[str, str, Comparison]]:
        """(model name, what was compared, agreement with fp32) for reduced-precision builds."""
        found = []
        for name, info in (self.quantization or {}).items():
            if "agreement_with_fp32" in info:
                found.append((name, "INT8", Comparison.from_json(info["agreement_with_fp32"])))
        for name, info in (self.float16 or {}).items():
            if "agreement_with_fp32" in info:
                found.append((name, "float16", Comparison.from_json(info["agreement_with_fp32"])))
        for name, bundle in (self.bundles or {}).items():
            if "fp16_agreement_with_fp32" in bundle:
                found.append((name, "float16 ONNX", Comparison.from_json(bundle["fp16_agreement_with_fp32"])))
        return found


class GateVerdict(Result):
    passed: bool
    reasons: list[str]
    thresholds: dict[str, float | None]


class PartTiming(Result):
    """One row of a latency breakdown: a part of the model (or an op type), baseline vs pruned."""

    name: str
    baseline_ms: float
    pruned_ms: float
    baseline_macs: int | None = None  # parts only
    pruned_macs: int | None = None


class LatencyBreakdown(Result):
    """Where the time goes, baseline vs pruned (`bench.breakdown`)."""

    source: str
    runs: int
    batch: int
    threads: int | None
    by_part: list[PartTiming]
    by_op: list[PartTiming]


class BenchReport(Result):
    """bench/<target>-<domain>.json."""

    run: str
    target: str
    engine_profile: str
    profile: str | None
    domain: str
    domain_seen_in_training: bool
    images: int
    batch: int
    threads: int | None
    accuracy: dict[str, float]
    agreement: float
    baseline_agreement: float
    latency_ms: dict[str, float]
    baseline_latency_ms: dict[str, float]
    iterations: int
    warmup: int
    throughput_ips: float
    baseline_throughput_ips: float
    macs: dict[str, int]
    params: dict[str, int]
    speedup: float
    speedup_over_fp32: float | None = None
    fp32_latency_ms: dict[str, float] | None = None
    device: dict[str, Any]
    measured: str
    gate: GateVerdict | None = None
    breakdown: LatencyBreakdown | None = None  # onnxruntime CPU targets; None elsewhere and in older reports
    # Absent from reports written before they were recorded: 1 / number of classes, and per accuracy key
    # (baseline, pruned_torch, baseline_engine, engine) how the predictions spread over the classes.
    chance_accuracy: float | None = None
    prediction_spread: dict[str, PredictionSpread] | None = None

    @property
    def passed(self) -> bool:
        return self.gate is not None and self.gate.passed

    def dominated(self) -> list[str]:
        """The models that give more than half of the images one class, as 'model: class share' (accuracy and
        agreement then say little: a near-constant classifier agrees with anything near-constant)."""
        names = {"baseline": "baseline torch", "baseline_engine": f"baseline {self.target}",
                 "pruned_torch": "pruned torch", "engine": f"pruned {self.target}"}  # fmt: skip
        spread = self.prediction_spread or {}
        return [f"{names[k]}: {spread[k].describe()}" for k in names if k in spread and spread[k].dominated]


class TargetBench(Result):
    """One row of `bench --target a,b|all`: a target's engine measured, or why it could not be."""

    target: str
    status: str  # "ok" or "failed"
    error: str | None = None
    size_mb: float | None = None  # the pruned model's engine file(s)
    accuracy: float | None = None  # the engine's, on the domain
    torch_accuracy: float | None = None  # the pruned torch model's, on the same images
    agreement: float | None = None  # top-1 agreement of engine and torch
    p50_ms: float | None = None
    p90_ms: float | None = None
    fps: float | None = None
    speedup: float | None = None  # over the unpruned model's engine on the same target
    gate_passed: bool | None = None
    report: str | None = None  # the bench report's path
    dominated: list[str] | None = None  # models whose predictions one class dominates (BenchReport.dominated)


class BenchTable(Result):
    """What `bench` prints: one row per target, on one run and domain."""

    run: str
    domain: str | None
    rows: list[TargetBench]
    chance_accuracy: float | None = None

    @property
    def passed(self) -> bool:
        return all(row.status == "ok" and row.gate_passed for row in self.rows)


class PruneSummary(Result):
    """What `edgeprune prune --json` prints: the run, its prune report and each stage's metrics."""

    run: str
    dir: str
    prune_report: PruneReport
    metrics: dict[str, StageMetrics]


class ExportSummary(Result):
    """What `edgeprune export --json` prints: the run, the ONNX parity check and the engine's build record."""

    run: str
    dir: str
    parity: ParityReport
    build: BuildRecord
    bundle: str | None  # a deploy bundle to build on the device, where TensorRT is missing here
