"""The bench report: its gate, and its markdown form."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.results import DOMINANT_SHARE, BenchReport, GateVerdict, LatencyBreakdown, PartTiming


@dataclass(frozen=True)
class BenchGate:
    """An engine passes when it agrees with its torch model and keeps its accuracy."""

    min_agreement: float = 0.99
    max_engine_drop: float = 0.01  # engine accuracy may fall this far below the pruned torch model's
    max_baseline_drop: float | None = None  # optional: pruned engine vs unpruned baseline
    latency_budget_ms: float | None = None

    def judge(self, report: BenchReport) -> GateVerdict:
        reasons = []
        acc = report.accuracy
        if report.agreement < self.min_agreement:
            reasons.append(f"engine/torch top-1 agreement {report.agreement:.4f} < {self.min_agreement}")
        if acc["pruned_torch"] - acc["engine"] > self.max_engine_drop:
            reasons.append(
                f"engine accuracy {acc['engine']:.4f} is more than {self.max_engine_drop} below torch's "
                f"{acc['pruned_torch']:.4f}"
            )
        if self.max_baseline_drop is not None and acc["baseline"] - acc["engine"] > self.max_baseline_drop:
            reasons.append(
                f"accuracy drop vs baseline {acc['baseline'] - acc['engine']:.4f} > {self.max_baseline_drop}"
            )
        if self.latency_budget_ms is not None and report.latency_ms["p50"] > self.latency_budget_ms:
            reasons.append(f"p50 latency {report.latency_ms['p50']:.2f} ms > budget {self.latency_budget_ms} ms")
        return GateVerdict(
            passed=not reasons,
            reasons=reasons,
            thresholds={
                "min_agreement": self.min_agreement,
                "max_engine_drop": self.max_engine_drop,
                "max_baseline_drop": self.max_baseline_drop,
                "latency_budget_ms": self.latency_budget_ms,
            },
        )


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def report_rows(report: BenchReport) -> list[tuple[str, str, str]]:
    """(metric, baseline, pruned) rows shared by the terminal table and the markdown report."""
    acc, lat, base_lat = report.accuracy, report.latency_ms, report.baseline_latency_ms
    rows = [
        ("MACs / image", _millions(report.macs["baseline"]), _millions(report.macs["pruned"])),
        ("params", _millions(report.params["baseline"]), _millions(report.params["pruned"])),
        (f"accuracy on {report.domain} (torch)", f"{acc['baseline']:.4f}", f"{acc['pruned_torch']:.4f}"),
        (f"accuracy on {report.domain} ({report.target})", f"{acc['baseline_engine']:.4f}", f"{acc['engine']:.4f}"),
        *_spread_rows(report),
        ("engine/torch top-1 agreement", f"{report.baseline_agreement:.4f}", f"{report.agreement:.4f}"),
        (f"latency p50 (batch {report.batch})", f"{base_lat['p50']:.2f} ms", f"{lat['p50']:.2f} ms"),
        (
            "latency p90 / p99",
            f"{base_lat['p90']:.2f} / {base_lat['p99']:.2f} ms",
            f"{lat['p90']:.2f} / {lat['p99']:.2f} ms",
        ),
        ("throughput", f"{report.baseline_throughput_ips:.1f} img/s", f"{report.throughput_ips:.1f} img/s"),
        ("speed-up (p50)", "1.00x", f"{report.speedup:.2f}x"),
    ]
    if report.speedup_over_fp32 is not None:
        rows.append(("speed-up over fp32 ONNX (pruned)", "", f"{report.speedup_over_fp32:.2f}x"))
    return rows


def _spread_rows(report: BenchReport) -> list[tuple[str, str, str]]:
    """Chance level and the most-predicted class with its share (absent from older reports)."""
    rows = []
    if report.chance_accuracy is not None:
        classes = round(1 / report.chance_accuracy)
        rows.append((f"chance level (1/{classes})", *[f"{report.chance_accuracy:.4f}"] * 2))
    spread = report.prediction_spread or {}
    for label, base, pruned in (("torch", "baseline", "pruned_torch"), (report.target, "baseline_engine", "engine")):
        if base in spread and pruned in spread:
            rows.append((f"most-predicted class ({label})", spread[base].describe(), spread[pruned].describe()))
    return rows


def describe_setting(report: BenchReport) -> str:
    seen = "seen in training" if report.domain_seen_in_training else "held out"
    return (
        f"{report.run}: {report.target} on {report.domain} ({seen}), "
        f"batch {report.batch}, {report.threads or 'all'} threads"
    )


def dominance_warning(report: BenchReport) -> str | None:
    """One line naming the models whose predictions on the domain are dominated by one class, or None."""
    dominated = report.dominated()
    if not dominated:
        return None
    return (
        f"one class gets more than {DOMINANT_SHARE:.0%} of the {report.domain} predictions ({'; '.join(dominated)}): "
        "accuracy and agreement say little about a near-constant classifier"
    )


def _warning_lines(report: BenchReport) -> list[str]:
    warning = dominance_warning(report)
    return ["", f"Warning: {warning}"] if warning else []


def to_markdown(report: BenchReport) -> str:
    seen = " (seen in training)" if report.domain_seen_in_training else " (held out)"
    gate = report.gate
    lines = [
        f"# edgeprune bench: run {report.run}, target {report.target}, domain {report.domain}{seen}",
        "",
        f"Measured {report.measured} on {report.device['machine']} ({report.device['cpus']} CPUs), "
        f"batch {report.batch}, {report.threads or 'all'} threads, {report.iterations} "
        f"timed iterations after warm-up; {report.images} images.",
        "",
        "| metric | baseline | pruned |",
        "|---|---|---|",
        *[f"| {m} | {b} | {p} |" for m, b, p in report_rows(report)],
        "",
        f"Gate: {'PASSED' if report.passed else 'FAILED'}",
        *[f"- {r}" for r in (gate.reasons if gate else [])],
        *_warning_lines(report),
        "",
        *(breakdown_markdown(report.breakdown) if report.breakdown else []),
    ]
    return "\n".join(lines)


def _ratio(before: float | None, after: float | None, form: str = ".2f") -> str:
    if not before or not after:
        return "-"
    return f"{before / after:{form}}x"


def _over_macs(row: PartTiming) -> str:
    """How much of the MACs saving the part turned into time: latency ratio over MACs ratio (1 = all of it)."""
    if not (row.baseline_macs and row.pruned_macs and row.pruned_ms and row.baseline_ms):
        return "-"
    return f"{(row.baseline_ms / row.pruned_ms) / (row.baseline_macs / row.pruned_macs):.2f}"


def part_rows(breakdown: LatencyBreakdown) -> list[tuple[str, ...]]:
    """(part, baseline ms, pruned ms, speed-up, MACs ratio, time / MACs) per part, for the terminal."""
    return [
        (r.name, f"{r.baseline_ms:.3f}", f"{r.pruned_ms:.3f}", _ratio(r.baseline_ms, r.pruned_ms),
         _ratio(r.baseline_macs, r.pruned_macs), _over_macs(r))
        for r in breakdown.by_part
    ]  # fmt: skip


def breakdown_markdown(breakdown: LatencyBreakdown) -> list[str]:
    """Two tables: per part of the model (time, MACs, and how much of the MACs cut became time), per op type."""
    total_base = sum(r.baseline_ms for r in breakdown.by_part)
    total = sum(r.pruned_ms for r in breakdown.by_part)
    lines = [
        "## Where the time goes",
        "",
        f"{breakdown.source}, {breakdown.runs} runs"
        + (f", batch {breakdown.batch}, {breakdown.threads or 'all'} threads. " if breakdown.batch else ". ")
        + (
            "The two models ran in turns with the profiler on, which adds its own cost to every node: compare the "
            "columns with each other, not with the p50 above. "
            if breakdown.batch
            else ""
        )
        + "*Time / MACs* is the latency ratio over the MACs ratio: "
        "1.00 means the part sped up as much as its MACs fell; far below 1, the part is bound by something else "
        "(memory, per-node overhead, fixed-size work such as softmax over tokens).",
        "",
        "| part | baseline ms | pruned ms | share of pruned | speed-up | MACs baseline | MACs pruned | MACs ratio "
        "| time / MACs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r, (name, base_ms, pruned_ms, speedup, macs_ratio, over_macs) in zip(
        breakdown.by_part, part_rows(breakdown), strict=True
    ):
        share = f"{r.pruned_ms / total:.0%}" if total else "-"
        macs = [f"{m / 1e6:.2f} M" if m else "-" for m in (r.baseline_macs, r.pruned_macs)]
        lines.append(
            f"| {name} | {base_ms} | {pruned_ms} | {share} | {speedup} | {macs[0]} | {macs[1]} | {macs_ratio} "
            f"| {over_macs} |"
        )
    lines += [
        f"| **all parts** | {total_base:.3f} | {total:.3f} | 100% | {_ratio(total_base, total)} | | | | |",
        "",
    ]
    if breakdown.by_op:
        lines += [
            "| op type | baseline ms | pruned ms | speed-up |",
            "|---|---|---|---|",
            *[
                f"| {r.name} | {r.baseline_ms:.3f} | {r.pruned_ms:.3f} | {_ratio(r.baseline_ms, r.pruned_ms)} |"
                for r in breakdown.by_op
            ],
            "",
        ]
    return lines
