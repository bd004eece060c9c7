"""Grouped structural global pruning of timm vision transformers over torch-pruning's DependencyGraph.

torch-pruning finds the coupled groups (the embedding width through every block, each MLP's hidden width, each
attention's heads and head dimensions) and removes channels; the choice of *which* channels is made here, so that:
- ranking is global: one threshold over every group's normalised importance (as in DepGraph);
- a group whose channels would all go keeps a floor instead of being skipped whole, so a larger ratio never
  gives a larger model: at least `round_to` channels (or one), one head, and a quarter of the share that the ratio
  keeps on average (so that 0.75 does not shrink the embedding to one channel, while 0.95 still leaves a tiny model);
- `target_macs` / `target_params` find the ratio that keeps that fraction of the model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.models.attention import attention_modules
from edgeprune.prune.adapters import FamilyAdapter, adapter_for
from edgeprune.prune.counting import count_macs, count_params, input_size
from edgeprune.prune.importance import METRICS, Batch, build_importance

_SEARCH_STEPS = 20
_FLOOR_SHARE = 0.25  # every group keeps at least this share of the average fraction kept
_TARGET_TOLERANCE = 0.01


@dataclass(frozen=True)
class PruneConfig:
    metric: str = "hessian"
    ratio: float = 0.5
    prune_heads: bool = False
    round_to: int | None = None
    target_macs: float | None = None
    target_params: float | None = None

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise EdgepruneError(f"unknown metric '{self.metric}': choose one of {', '.join(METRICS)}")
        if not 0.0 < self.ratio < 1.0:
            raise EdgepruneError(f"--ratio must be strictly between 0 and 1 (got {self.ratio})")
        if self.round_to is not None and self.round_to < 1:
            raise EdgepruneError(f"--round-to must be a positive integer (got {self.round_to})")
        if self.target_macs is not None and self.target_params is not None:
            raise EdgepruneError("give --target-macs or --target-params, not both")
        for name in ("target_macs", "target_params"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise EdgepruneError(f"--{name.replace('_', '-')} is the fraction to keep, in (0, 1) (got {value})")


@dataclass
class PrunableGroup:
    """One coupled group, identified by its root layer; units are channels, or head dims of an attention."""

    root: str
    pruning_fn: Callable[..., Any]
    unit_scores: torch.Tensor
    min_units: int  # the floor whatever the ratio (round_to, or one)
    attention: str | None = None  # name of the attention module, for attention groups
    num_heads: int = 1
    head_scores: torch.Tensor | None = None


@dataclass
class Plan:
    """Per group: how many of its lowest-scored units go, and which heads."""

    units_removed: dict[str, int] = field(default_factory=dict)
    heads_removed: dict[str, list[int]] = field(default_factory=dict)


def block_widths(model: nn.Module) -> list[dict[str, int]]:
    widths = []
    for block in model.blocks:
        attn = block.attn
        widths.append(
            {
                "embed_dim": int(block.norm1.weight.shape[0]),
                "heads": int(attn.num_heads),
                "head_dim": int(attn.qkv.out_features // (3 * attn.num_heads)),
                "mlp_hidden": int(block.mlp.fc1.out_features),
            }
        )
    return widths


def _build_graph(model: nn.Module, adapter: FamilyAdapter) -> tp.DependencyGraph:
    return tp.DependencyGraph().build_dependency(
        model,
        example_inputs=torch.zeros(1, 3, *input_size(model)),
        unwrapped_parameters=adapter.unwrapped_parameters(model),
        ignored_params=adapter.ignored_parameters(model),
        verbose=False,
    )


def find_groups(
    model: nn.Module, graph: tp.DependencyGraph, adapter: FamilyAdapter, importance: Any, config: PruneConfig
) -> list[PrunableGroup]:
    names = {m: n for n, m in model.named_modules()}
    by_qkv = {attn.qkv: (name, attn) for name, attn in attention_modules(model).items()}
    min_units = config.round_to or 1
    groups = []
    ignored = [m for head in adapter.classifiers(model) for m in head.modules()]
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        if root in by_qkv:
            name, attn = by_qkv[root]
            group = graph.get_pruning_group(attn.proj, tp.prune_linear_in_channels, list(range(attn.proj.in_features)))
            scores = importance(group)
            if scores is None:
                continue
            per_head = scores.view(attn.num_heads, -1)
            groups.append(
                PrunableGroup(
                    names[attn.proj],
                    tp.prune_linear_in_channels,
                    per_head.mean(0),
                    min_units,
                    name,
                    attn.num_heads,
                    per_head.mean(1),
                )
            )
        else:
            scores = importance(group)
            if scores is None:
                continue
            groups.append(PrunableGroup(names[root], group[0].dep.handler, scores, min_units))
    if not groups:
        raise EdgepruneError("found nothing to prune in this model")
    return groups


def group_floor(size: int, ratio: float, minimum: int) -> int:
    """Units a group of `size` keeps at least when `ratio` of all units go (non-increasing in the ratio)."""
    return max(minimum, math.ceil(size * (1.0 - ratio) * _FLOOR_SHARE))


def plan_for_ratio(groups: Sequence[PrunableGroup], ratio: float, config: PruneConfig) -> Plan:
    """Remove `ratio` of all units by one global threshold, never below a group's floor; same for heads."""
    plan = Plan()
    total = sum(len(g.unit_scores) for g in groups)
    candidates = [
        (float(score), i)
        for i, g in enumerate(groups)
        for score in torch.sort(g.unit_scores).values[
            : max(0, len(g.unit_scores) - group_floor(len(g.unit_scores), ratio, g.min_units))
        ]
    ]
    candidates.sort()
    removed = [0] * len(groups)
    for _, i in candidates[: int(ratio * total)]:
        removed[i] += 1
    for i, g in enumerate(groups):
        kept = len(g.unit_scores) - removed[i]
        if config.round_to:
            kept = max(config.round_to, kept - kept % config.round_to)
        plan.units_removed[g.root] = max(0, len(g.unit_scores) - kept)

    if config.prune_heads:
        attention = [g for g in groups if g.head_scores is not None]
        total_heads = sum(g.num_heads for g in attention)
        head_candidates = sorted(
            (float(score), i, int(h))
            for i, g in enumerate(attention)
            for score, h in zip(*torch.sort(g.head_scores), strict=True)
        )
        dropped: dict[int, list[int]] = {i: [] for i in range(len(attention))}
        budget = int(ratio * total_heads)
        for _, i, h in head_candidates:
            if budget == 0:
                break
            if len(dropped[i]) < attention[i].num_heads - group_floor(attention[i].num_heads, ratio, 1):
                dropped[i].append(h)
                budget -= 1
        plan.heads_removed = {attention[i].root: sorted(h) for i, h in dropped.items() if h}
    return plan


def _removed_indices(group: PrunableGroup, plan: Plan) -> list[int]:
    n_units = len(group.unit_scores)
    units = torch.argsort(group.unit_scores)[: plan.units_removed.get(group.root, 0)].tolist()
    if group.attention is None:
        return sorted(units)
    idxs = {h * n_units + d for h in range(group.num_heads) for d in units}
    for h in plan.heads_removed.get(group.root, []):
        idxs.update(range(h * n_units, (h + 1) * n_units))
    return sorted(idxs)


def apply_plan(model: nn.Module, adapter: FamilyAdapter, groups: Sequence[PrunableGroup], plan: Plan) -> None:
    """Prune a model (in the adapter's prepared form) by `plan`, then let the adapter finish it."""
    graph = _build_graph(model, adapter)
    modules = dict(model.named_modules())
    for group in groups:
        idxs = _removed_indices(group, plan)
        if idxs:
            graph.get_pruning_group(modules[group.root], group.pruning_fn, idxs).prune()
    kept_heads, num_heads = {}, {}
    for group in groups:
        if group.attention is not None:
            dropped = set(plan.heads_removed.get(group.root, []))
            kept_heads[group.attention] = torch.tensor([h for h in range(group.num_heads) if h not in dropped])
            num_heads[group.attention] = group.num_heads - len(dropped)
    adapter.finish(model, kept_heads, num_heads)


def _search_ratio(
    model: nn.Module,
    adapter: FamilyAdapter,
    groups: Sequence[PrunableGroup],
    config: PruneConfig,
    measure: Callable[[nn.Module], int],
    target: int,
) -> tuple[float, Plan]:
    """Bisect the ratio whose pruned model keeps `target` (MACs or params); the measure falls as the ratio grows."""
    low, high = 0.0, 0.999
    best: tuple[float, Plan, int] | None = None
    for _ in range(_SEARCH_STEPS):
        ratio = (low + high) / 2
        plan = plan_for_ratio(groups, ratio, config)
        trial = copy.deepcopy(model)
        apply_plan(trial, adapter, groups, plan)
        value = measure(trial)
        if best is None or abs(value - target) < abs(best[2] - target):
            best = (ratio, plan, value)
        if abs(value / target - 1) <= _TARGET_TOLERANCE:
            break
        low, high = (ratio, high) if value > target else (low, ratio)
    assert best is not None
    return best[0], best[1]


def prune_model(
    model: nn.Module, timm_name: str, config: PruneConfig, calib_batches: Sequence[Batch]
) -> dict[str, Any]:
    """Prune `model` in place; returns the prune report (MACs, params and per-block widths before and after)."""
    config.validate()
    adapter = adapter_for(model, timm_name)
    before = {"macs": count_macs(model), "params": count_params(model), "blocks": block_widths(model)}

    adapter.prepare(model)
    importance = build_importance(config.metric, model, calib_batches)
    groups = find_groups(model, _build_graph(model, adapter), adapter, importance, config)
    model.zero_grad(set_to_none=True)
    ratio = config.ratio
    if config.target_macs is not None:
        ratio, plan = _search_ratio(
            model, adapter, groups, config, count_macs, int(config.target_macs * before["macs"])
        )
    elif config.target_params is not None:
        ratio, plan = _search_ratio(
            model, adapter, groups, config, count_params, int(config.target_params * before["params"])
        )
    else:
        plan = plan_for_ratio(groups, ratio, config)
    apply_plan(model, adapter, groups, plan)

    after = {"macs": count_macs(model), "params": count_params(model), "blocks": block_widths(model)}
    return {
        "model": timm_name,
        "family": adapter.family,
        "metric": config.metric,
        "ratio": ratio,
        "requested": {"ratio": config.ratio, "target_macs": config.target_macs, "target_params": config.target_params},
        "prune_heads": config.prune_heads,
        "round_to": config.round_to,
        "calibration_samples": sum(len(x) for x, _ in calib_batches),
        "macs": {"before": before["macs"], "after": after["macs"]},
        "params": {"before": before["params"], "after": after["params"]},
        "achieved": {
            "macs_kept": after["macs"] / before["macs"],
            "params_kept": after["params"] / before["params"],
        },
        "blocks": [
            {"index": i, "before": b, "after": a}
            for i, (b, a) in enumerate(zip(before["blocks"], after["blocks"], strict=True))
        ],
    }
