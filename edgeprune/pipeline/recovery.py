"""Recovery around pruning: the distillation teacher, and the steps of iterative pruning with their merged report."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from torch import nn

from edgeprune.models.artifact import load_model
from edgeprune.prune.pruner import PruneConfig
from edgeprune.workspace import Run

if TYPE_CHECKING:
    from edgeprune.pipeline.prune import PruneRequest


def teacher_model(run: Run, request: PruneRequest) -> nn.Module | None:
    """The baseline as distillation teacher, when asked for."""
    return load_model(run.stage("baseline")) if request.distill else None


def step_config(request: PruneRequest, step: int, steps: int, kept: dict[str, float]) -> PruneConfig:
    """Step `step` of `steps`: the same final amount, reached geometrically; `kept` is what is left so far."""
    config = request.prune_config()
    if steps == 1:
        return config
    if request.target_macs is not None:
        return replace(config, target_macs=min(0.999, request.target_macs ** (step / steps) / kept["macs"]))
    if request.target_params is not None:
        return replace(config, target_params=min(0.999, request.target_params ** (step / steps) / kept["params"]))
    return replace(config, ratio=1 - (1 - request.ratio) ** (1 / steps))


def merge_step_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = reports[0], reports[-1]
    units = {"before": first["units"]["before"], "after": last["units"]["after"]}
    units["removed_fraction"] = 1 - units["after"] / units["before"]
    return {
        **last,
        "ratio": units["removed_fraction"],
        "requested": first["requested"],
        "macs": {"before": first["macs"]["before"], "after": last["macs"]["after"]},
        "params": {"before": first["params"]["before"], "after": last["params"]["after"]},
        "units": units,
        "achieved": {
            "macs_kept": last["macs"]["after"] / first["macs"]["before"],
            "params_kept": last["params"]["after"] / first["params"]["before"],
            "units_removed": units["removed_fraction"],
        },
        "blocks": [
            {"index": b0["index"], "before": b0["before"], "after": b1["after"]}
            for b0, b1 in zip(first["blocks"], last["blocks"], strict=True)
        ],
        "steps": [{k: r[k] for k in ("macs", "params", "units", "achieved")} for r in reports],
    }
