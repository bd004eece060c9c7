"""Pruning to a latency: the latency table (cached in the workspace, measured when missing, refused when measured
for other conditions), and a closed loop that measures the pruned model on the target and corrects the aim."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from edgeprune.config import PruneConfig
from edgeprune.errors import EdgepruneError
from edgeprune.latency.build import build_table, table_key, unpruned_model
from edgeprune.latency.measure import measurable, measure_p50s
from edgeprune.latency.table import LatencyTable, load_table, table_path
from edgeprune.latency.widths import model_widths
from edgeprune.models.registry import ModelSpec
from edgeprune.pipeline.export import default_profile
from edgeprune.profiles import Profile, load_profile
from edgeprune.progress import Reporter
from edgeprune.prune.pruner import prune_model
from edgeprune.requests import PruneRequest
from edgeprune.results import LatencyAttempt, LatencyOutcome, PruneReport
from edgeprune.targets import DEFAULT_TARGET, Target, resolve_target

MAX_ATTEMPTS = 5
TOLERANCE = 0.05  # measured within 5% of the goal: done


@dataclass(frozen=True)
class LatencyGoal:
    goal_ms: float
    asked: str
    speedup: float | None  # --target-speedup: judged by speed-ups measured beside the unpruned model
    profile: Profile
    target: Target
    table: LatencyTable
    table_path: Path


def profile_and_target(profile_name: str | None, target_name: str | None) -> tuple[Profile, Target]:
    """The profile asked for (default: as export picks one for the target), and its default target unless one is
    asked for."""
    if profile_name is not None:
        profile = load_profile(profile_name)
        return profile, resolve_target(target_name or profile.default_target)
    target = resolve_target(target_name or DEFAULT_TARGET)
    return default_profile(target), target


def ensure_table(
    spec: ModelSpec,
    profile: Profile,
    target: Target,
    workspace_root: Path,
    reporter: Reporter,
    *,
    path: Path | None = None,
    force: bool = False,
    probes: int | None = None,
) -> tuple[LatencyTable, Path]:
    """The table for `spec` on `target` with `profile`: `path` if given (refused when measured elsewhere), else the
    workspace's, measured now when there is none (or `force`)."""
    model = unpruned_model(spec)
    wanted = table_key(spec, model, profile, target)
    if path is not None:
        return load_table(path, wanted, profile), path
    cached = table_path(workspace_root, spec.timm_name, profile, target)
    if cached.is_file() and not force:
        return load_table(cached, wanted, profile), cached
    reporter.info(f"latency table: measuring {spec.timm_name} on {target.name} for profile {profile.name}")
    table = build_table(spec, model, wanted, profile, target, reporter, **({"probes": probes} if probes else {}))
    cached.parent.mkdir(parents=True, exist_ok=True)
    table.write(cached)
    return table, cached


def latency_goal(request: PruneRequest, spec: ModelSpec, workspace_root: Path, reporter: Reporter) -> LatencyGoal:
    profile, target = profile_and_target(request.profile, request.target)
    table, path = ensure_table(spec, profile, target, workspace_root, reporter, path=request.latency_table)
    if request.target_speedup is not None:
        goal, asked = table.unpruned_ms / request.target_speedup, f"--target-speedup {request.target_speedup:g}"
    else:
        assert request.target_latency is not None
        goal, asked = request.target_latency, f"--target-latency {request.target_latency:g}"
    reporter.info(
        f"latency goal {goal:.2f} ms on {target.name} (unpruned {table.unpruned_ms:.2f} ms; table {path}, "
        f"median error {table.error.median_pct:.1f}% on held-out probes)"
    )
    return LatencyGoal(goal, asked, request.target_speedup, profile, target, table, path)


def _measured(models: list[nn.Module], goal: LatencyGoal) -> list[float] | None:
    """p50 of each model on the target, in alternating rounds; None where the target cannot run here."""
    if not measurable(goal.target):
        return None  # pruning off the device: the table's prediction is what there is
    key = goal.table.key
    return measure_p50s(models, goal.target, goal.profile, key.batch, key.threads_used)


def _timed(original: nn.Module, models: list[nn.Module], goal: LatencyGoal) -> tuple[list[float], float | None] | None:
    """p50 of each model, in one measurement of alternating rounds, and for a speed-up goal the unpruned model's
    p50 measured with them; None where the target cannot run here."""
    if goal.speedup is None:
        timed = _measured(models, goal)
        return None if timed is None else (timed, None)
    timed = _measured([original, *models], goal)
    return None if timed is None else (timed[1:], timed[0])


def _counts_as(measured: float, unpruned: float | None, goal: LatencyGoal) -> float:
    """The latency a measurement counts as: itself, or for a speed-up goal the table's unpruned latency over the
    speed-up measured in that moment."""
    return measured if unpruned is None else goal.table.unpruned_ms * measured / unpruned


@dataclass
class _Trial:
    model: nn.Module
    report: PruneReport
    attempt: LatencyAttempt

    @property
    def counts_as(self) -> float:
        """The median of its readings; the table's prediction where the target cannot run here."""
        counted = self.attempt.counts_as_ms
        return counted if counted is not None else self.attempt.predicted_ms


def _rivals(trials: list[_Trial], goal_ms: float, skip: _Trial | None = None) -> list[_Trial]:
    """The trials that count closest to the goal from below and from above (at most one each): they are measured
    again beside the next one, so that no single reading, on a machine whose timings move, steers the aim or wins."""
    chosen = []
    for side in (lambda c: c < goal_ms, lambda c: c >= goal_ms):
        near = [t for t in trials if t is not skip and t.attempt.counted_ms and side(t.counts_as)]
        if near:
            chosen.append(min(near, key=lambda t: abs(t.counts_as - goal_ms)))
    return chosen


def _measure_with_rivals(
    original: nn.Module, model: nn.Module, rivals: list[_Trial], goal: LatencyGoal
) -> tuple[float, float | None] | None:
    """Measure `model` beside its rivals; the rivals' readings are added to their attempts. Returns `model`'s p50
    and the unpruned p50 of that moment (speed-up goals), or None where the target cannot run here."""
    timed = _timed(original, [model, *(r.model for r in rivals)], goal)
    if timed is None:
        return None
    times, unpruned = timed
    for rival, measured in zip(rivals, times[1:], strict=True):
        rival.attempt.counted_ms.append(_counts_as(measured, unpruned, goal))
    return times[0], unpruned


def _report_attempt(attempt: LatencyAttempt, goal: LatencyGoal, reporter: Reporter) -> None:
    measured = attempt.measured_ms
    reporter.info(
        f"latency: aimed at {attempt.aim_ms:.2f} ms, predicted {attempt.predicted_ms:.2f} ms, "
        + ("not measurable here" if measured is None else f"measured {measured:.2f} ms")
        + (
            f" ({attempt.speedup:.2f}x the unpruned {attempt.unpruned_measured_ms:.2f} ms)"
            if attempt.speedup is not None
            else ""
        )
        + f"; goal {goal.goal_ms:.2f} ms"
    )


def next_aim(tried: list[tuple[float, float]], goal_ms: float) -> float:
    """The aim whose measurement should land on the goal: interpolated between the closest attempts that measured
    below and above it (measured latency grows with the aim), else scaled by goal / measured from the closest."""
    below = [t for t in tried if t[1] < goal_ms]
    above = [t for t in tried if t[1] >= goal_ms]
    if below and above:
        (a0, m0), (a1, m1) = max(below, key=lambda t: t[1]), min(above, key=lambda t: t[1])
        if m1 > m0:
            return a0 + (goal_ms - m0) * (a1 - a0) / (m1 - m0)
    aim, measured = min(tried, key=lambda t: abs(t[1] - goal_ms))
    return aim * goal_ms / measured


def prune_to_latency(
    model: nn.Module,
    timm_name: str,
    config: PruneConfig,
    batches: Any,
    goal: LatencyGoal,
    reporter: Reporter,
) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of `model` to the goal as the table predicts it, measure it beside the attempts closest below and
    above the goal (`_rivals`), and aim again (`next_aim` on each attempt's median reading) until the closest
    attempt lands within TOLERANCE, confirmed by a second reading, or MAX_ATTEMPTS are spent."""
    config = replace(config, round_to=config.round_to or goal.profile.latency.round_to)
    aim = goal.goal_ms
    trials: list[_Trial] = []

    def closest() -> _Trial:
        return min(trials, key=lambda t: abs(t.counts_as - goal.goal_ms))

    def landed(trial: _Trial) -> bool:
        return abs(trial.counts_as / goal.goal_ms - 1) <= TOLERANCE

    while len(trials) < MAX_ATTEMPTS:
        trial = copy.deepcopy(model)
        try:
            report = prune_model(trial, timm_name, replace(config, target_latency=aim), batches, goal.table)
        except EdgepruneError as exc:
            if not trials:
                raise
            reporter.info(f"latency: cannot aim at {aim:.2f} ms ({exc}); keeping the closest attempt")
            break
        predicted = goal.table.predict_ms(model_widths(trial))
        timed = _measure_with_rivals(model, trial, _rivals(trials, goal.goal_ms), goal)
        if timed is None:  # pruning off the device: the table's prediction is what there is
            trials.append(_Trial(trial, report, LatencyAttempt(aim_ms=aim, predicted_ms=predicted, measured_ms=None)))
            _report_attempt(trials[-1].attempt, goal, reporter)
            break
        measured, unpruned = timed
        attempt = LatencyAttempt(
            aim_ms=aim,
            predicted_ms=predicted,
            measured_ms=measured,
            unpruned_measured_ms=unpruned,
            counted_ms=[_counts_as(measured, unpruned, goal)],
        )
        trials.append(_Trial(trial, report, attempt))
        _report_attempt(attempt, goal, reporter)
        best = closest()
        if landed(best) and len(best.attempt.counted_ms) == 1:  # confirm a single reading before trusting it
            again = _measure_with_rivals(model, best.model, _rivals(trials, goal.goal_ms, skip=best), goal)
            assert again is not None
            best.attempt.counted_ms.append(_counts_as(*again, goal))
            best = closest()
        if landed(best) and len(best.attempt.counted_ms) > 1:
            break
        aim = next_aim([(t.attempt.aim_ms, t.counts_as) for t in trials], goal.goal_ms)
    kept = closest()
    trial, report, chosen = kept.model, kept.report, kept.attempt
    key = goal.table.key
    report.latency = LatencyOutcome(
        goal_ms=goal.goal_ms,
        asked=goal.asked,
        target=goal.target.name,
        profile=goal.profile.name,
        batch=key.batch,
        threads=key.threads_used,
        table=str(goal.table_path),
        table_error_pct=goal.table.error.median_pct,
        unpruned_ms=goal.table.unpruned_ms,
        predicted_ms=chosen.predicted_ms,
        measured_ms=chosen.measured_ms,
        speedup=chosen.speedup,
        counted_ms=chosen.counts_as_ms,
        attempts=[t.attempt for t in trials],
    )
    return trial, report
