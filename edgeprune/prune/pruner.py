"""Grouped structural global pruning of timm vision transformers over torch-pruning's DependencyGraph.

torch-pruning finds the coupled groups (the embedding width through every block, each MLP's hidden width, each
attention's heads and head dimensions), scores their channels and removes them; `selection` decides *which*
channels go, in one global budget, and `compensate` gives back on average what they contributed. A pruned model
computes what the original computes with the pruned units masked: attention keeps its softmax scale.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch_pruning as tp
from torch import nn

from edgeprune.config import PruneConfig, resolve_normalization
from edgeprune.errors import EdgepruneError
from edgeprune.latency.widths import Widths
from edgeprune.models.attention import attention_modules
from edgeprune.prune.adapters import FamilyAdapter, adapter_for
from edgeprune.prune.compensate import Cuts, measure_compensation
from edgeprune.prune.counting import count_macs, count_params, input_size
from edgeprune.prune.importance import Batch, build_importance
from edgeprune.prune.selection import (
    Floors,
    Move,
    Plan,
    PrunableGroup,
    plan_from_prefix,
    prefix_for_ratio,
    removal_sequence,
)
from edgeprune.results import PruneReport

if TYPE_CHECKING:
    from edgeprune.latency.table import LatencyTable

_SEARCH_STEPS = 24
_TARGET_TOLERANCE = 0.01
_RATIO_TOLERANCE = 0.02


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


def build_graph(model: nn.Module, adapter: FamilyAdapter) -> tp.DependencyGraph:
    return tp.DependencyGraph().build_dependency(
        model,
        example_inputs=torch.zeros(1, 3, *input_size(model)),
        unwrapped_parameters=adapter.unwrapped_parameters(model),
        ignored_params=adapter.ignored_parameters(model),
        verbose=False,
    )


@torch.no_grad()
def _token_count(model: nn.Module) -> int:
    if not len(model.blocks):  # a latency probe of the fixed parts alone
        return int(model.patch_embed.num_patches) + int(getattr(model, "num_prefix_tokens", 1))
    seen: list[int] = []
    handle = model.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    try:
        was_training = model.training
        model.eval()(torch.zeros(1, 3, *input_size(model)))
        model.train(was_training)
    finally:
        handle.remove()
    return seen[0]


class _UnitCosts:
    """MACs per image that one removed unit saves, at the unpruned widths (every matmul counted)."""

    def __init__(self, model: nn.Module, adapter: FamilyAdapter) -> None:
        self.tokens = _token_count(model)
        self.embed = int(model.blocks[0].norm1.weight.shape[0])
        conv = model.patch_embed.proj
        patches = self.tokens - getattr(model, "num_prefix_tokens", 1)
        classes = sum(head.out_features for head in adapter.classifiers(model) if isinstance(head, nn.Linear))
        per_block = sum(
            self.tokens * (4 * (b.attn.qkv.out_features // 3) + 2 * b.mlp.fc1.out_features) for b in model.blocks
        )
        self.embedding = per_block + patches * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] + classes

    def __call__(self, kind: str) -> float:
        t, e = self.tokens, self.embed
        return {"embedding": self.embedding, "attention": t * 4 * e + 2 * t * t, "mlp": 2 * t * e}.get(kind, t * e)


def find_groups(
    model: nn.Module, graph: tp.DependencyGraph, adapter: FamilyAdapter, importance: Any
) -> list[PrunableGroup]:
    """Every prunable coupled group with its channels' raw (unnormalised, summed over the group) importance."""
    names = {m: n for n, m in model.named_modules()}
    by_qkv = {attn.qkv: (name, attn) for name, attn in attention_modules(model).items()}
    costs = _UnitCosts(model, adapter)
    groups = []
    ignored = [m for head in adapter.classifiers(model) for m in head.modules()]
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        if root in by_qkv:
            name, attn = by_qkv[root]
            group = graph.get_pruning_group(attn.proj, tp.prune_linear_in_channels, list(range(attn.proj.in_features)))
            scores = importance(group)
            if scores is not None:
                groups.append(
                    PrunableGroup(
                        names[attn.proj],
                        "attention",
                        scores.detach().view(attn.num_heads, -1),
                        costs("attention"),
                        name,
                        tp.prune_linear_in_channels,
                    )
                )
            continue
        scores = importance(group)
        if scores is None:
            continue
        members = {dep.target.module for dep, _ in group}
        kind = "embedding" if model.patch_embed.proj in members else "mlp" if names[root].endswith("fc1") else "other"
        groups.append(PrunableGroup(names[root], kind, scores.detach(), costs(kind), pruning_fn=group[0].dep.handler))
    if not groups:
        raise EdgepruneError("found nothing to prune in this model")
    return groups


def _removed_indices(group: PrunableGroup, plan: Plan) -> list[int]:
    units = plan.units_removed.get(group.root, [])
    if group.attention is None:
        return list(units)
    head_dim = group.size // group.num_heads
    idxs = {h * head_dim + d for h in range(group.num_heads) for d in units}
    for h in plan.heads_removed.get(group.root, []):
        idxs.update(range(h * head_dim, (h + 1) * head_dim))
    return sorted(idxs)


def apply_plan(
    model: nn.Module,
    adapter: FamilyAdapter,
    groups: Sequence[PrunableGroup],
    plan: Plan,
    compensation_batches: Sequence[Batch] = (),
    compensation: str = "fit",
) -> None:
    """Prune a model (in the adapter's prepared form) by `plan`, then let the adapter finish it.

    With calibration batches, what the removed units contributed is folded back: their mean, or with `compensation`
    "fit" their least-squares fit on the kept units (see `compensate`).
    """
    graph = build_graph(model, adapter)
    modules = dict(model.named_modules())
    removals = [(g, idxs) for g in groups if (idxs := _removed_indices(g, plan))]
    correction = None
    if compensation_batches:
        cuts = Cuts()
        for group, idxs in removals:
            cuts.add(graph.get_pruning_group(modules[group.root], group.pruning_fn, idxs))
        correction = measure_compensation(model, cuts, compensation_batches, fit=compensation == "fit")
    for group, idxs in removals:  # each group anew: pruning one replaces parameters the next may name
        graph.get_pruning_group(modules[group.root], group.pruning_fn, idxs).prune()
    if correction is not None:
        correction.apply()
    kept_heads, num_heads = {}, {}
    for group in groups:
        if group.attention is not None:
            dropped = set(plan.heads_removed.get(group.root, []))
            kept_heads[group.attention] = torch.tensor([h for h in range(group.num_heads) if h not in dropped])
            num_heads[group.attention] = group.num_heads - len(dropped)
    adapter.finish(model, kept_heads, num_heads)


_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")


def _block_of(group: PrunableGroup) -> int | None:
    found = _BLOCK_INDEX.match(group.root)
    return int(found.group(1)) if found else None


def planned_widths(groups: Sequence[PrunableGroup], plan: Plan, blocks: Sequence[dict[str, int]]) -> list[Widths]:
    """The block widths `plan` leaves (`blocks`: the widths before, as `block_widths` gives them)."""
    widths = [dict(b) for b in blocks]
    for group in groups:
        units, heads = len(plan.units_removed.get(group.root, [])), len(plan.heads_removed.get(group.root, []))
        index = _block_of(group)
        if group.kind == "embedding":
            for w in widths:
                w["embed_dim"] -= units
        elif group.kind == "mlp" and index is not None:
            widths[index]["mlp_hidden"] -= units
        elif group.kind == "attention" and index is not None:
            widths[index]["heads"] -= heads
            widths[index]["head_dim"] -= units
    return [Widths.from_block(w) for w in widths]


def _set_unit_latency(groups: Sequence[PrunableGroup], blocks: Sequence[dict[str, int]], table: LatencyTable) -> None:
    embedding, per_block = table.unit_latency([Widths.from_block(b) for b in blocks])
    for group in groups:
        index = _block_of(group)
        if group.kind == "embedding":
            group.unit_latency = embedding
        elif index is not None and group.kind in ("attention", "mlp"):
            group.unit_latency = per_block[index][group.kind]


_FLOORS = "the floors (embedding >= 8 channels, heads >= 4 dims, at least one head)"


@dataclass
class _Candidates:
    """A model in the adapter's prepared form with its groups and ranked removals, before any is applied."""

    model: nn.Module
    adapter: FamilyAdapter
    groups: Sequence[PrunableGroup]
    sequence: Sequence[Move]
    blocks: Sequence[dict[str, int]]  # the widths before

    def measure(self, length: int, measure: Callable[[nn.Module], int]) -> int:
        """`measure` of a copy pruned by the first `length` removals."""
        trial = copy.deepcopy(self.model)
        apply_plan(trial, self.adapter, self.groups, plan_from_prefix(self.groups, self.sequence, length))
        return measure(trial)

    def predict_ms(self, length: int, table: LatencyTable) -> float:
        """Predicted latency after the first `length` removals (from the widths: nothing is pruned)."""
        return table.predict_ms(
            planned_widths(self.groups, plan_from_prefix(self.groups, self.sequence, length), self.blocks)
        )


def _search_prefix(c: _Candidates, measure: Callable[[int], float], target: float, what: str, before: float) -> int:
    """The prefix whose pruned model keeps closest to `target` (MACs, params or latency), which fall as the prefix
    grows; `measure(length)` gives it for a prefix."""
    smallest = measure(len(c.sequence))
    if smallest > target * (1 + _TARGET_TOLERANCE) and what == "latency":
        raise EdgepruneError(
            f"cannot prune to {target:.2f} ms: {_FLOORS} leave at least {smallest:.2f} ms (as the latency table "
            f"predicts it); ask for {smallest:.2f} ms or more, or pass --allow-narrow"
        )
    if smallest > target * (1 + _TARGET_TOLERANCE):
        raise EdgepruneError(
            f"cannot keep only {target / before:.3f} of the {what}: {_FLOORS} leave at least "
            f"{smallest / before:.3f}; ask for {smallest / before:.3f} or more, or pass --allow-narrow"
        )
    low, high = 0, len(c.sequence)  # measure(low) >= target >= measure(high)
    best = (high, smallest)
    for _ in range(_SEARCH_STEPS):
        if high - low <= 1:
            break
        middle = (low + high) // 2
        value = measure(middle)
        if abs(value - target) < abs(best[1] - target):
            best = (middle, value)
        if abs(value / target - 1) <= _TARGET_TOLERANCE / 4:
            break
        low, high = (middle, high) if value > target else (low, middle)
    return best[0]


def _prefix_for_amount(c: _Candidates, config: PruneConfig, before: dict[str, Any], table: LatencyTable | None) -> int:
    """How many of the ranked removals the requested amount (ratio, MACs, params or latency target) takes."""
    amount = config.amount()
    if amount.kind == "latency":
        if table is None:
            raise EdgepruneError("pruning to a latency needs a latency table")
        unpruned = c.predict_ms(0, table)
        return _search_prefix(c, lambda n: c.predict_ms(n, table), amount.value, "latency", unpruned)
    if amount.kind != "ratio":
        counter, what = (count_macs, "MACs") if amount.kind == "macs" else (count_params, "parameters")
        target = int(amount.value * before[amount.kind])
        return _search_prefix(c, lambda n: c.measure(n, counter), target, what, before[amount.kind])
    units_total = sum(g.size for g in c.groups)
    length = prefix_for_ratio(c.sequence, units_total, amount.value)
    reachable = sum(m.units for m in c.sequence) / units_total
    if length == len(c.sequence) and amount.value - reachable > _RATIO_TOLERANCE:
        smallest = c.measure(len(c.sequence), count_macs)
        raise EdgepruneError(
            f"--ratio {amount.value:g} removes more than {_FLOORS} allow: at most {reachable:.3f} of the units can "
            f"go, keeping {smallest / before['macs']:.3f} of the MACs; lower --ratio or pass --allow-narrow"
        )
    return length


def _measures(model: nn.Module) -> dict[str, Any]:
    return {"macs": count_macs(model), "params": count_params(model), "blocks": block_widths(model)}


def prune_model(
    model: nn.Module,
    timm_name: str,
    config: PruneConfig,
    calib_batches: Sequence[Batch],
    latency_table: LatencyTable | None = None,
) -> PruneReport:
    """Prune `model` in place; returns the prune report (MACs, params, units and per-block widths before and after).

    With a latency table, units are ranked by importance per ms they save, and a latency target is met as the table
    predicts it (`pipeline.latency` measures the result)."""
    config.validate()
    adapter = adapter_for(model, timm_name)
    before = _measures(model)
    normalization, cost_exponent = resolve_normalization(config.normalization, config.metric, config.cost_exponent)

    adapter.prepare(model)
    importance = build_importance(config.metric, model, calib_batches)
    groups = find_groups(model, build_graph(model, adapter), adapter, importance)
    model.zero_grad(set_to_none=True)
    per_ms = config.amount().kind == "latency" and config.latency_ranking == "per-ms"
    if latency_table is not None and per_ms:
        _set_unit_latency(groups, before["blocks"], latency_table)
    sequence = removal_sequence(
        groups,
        normalization=normalization,
        round_to=config.round_to,
        prune_heads=config.prune_heads,
        whole_heads=config.whole_heads,
        max_share=config.max_share,
        cost_exponent=cost_exponent or 1.0,
        floors=Floors.for_config(config.round_to, config.allow_narrow),
    )
    candidates = _Candidates(model, adapter, groups, sequence, before["blocks"])
    length = _prefix_for_amount(candidates, config, before, latency_table)
    plan = plan_from_prefix(groups, sequence, length)
    apply_plan(model, adapter, groups, plan, calib_batches if config.compensate else (), config.compensation)
    after = _measures(model)
    return PruneReport.from_json(
        {
            "model": timm_name,
            "family": adapter.family,
            "metric": config.metric,
            "ratio": plan.removed_fraction,
            "requested": {
                "ratio": config.ratio,
                "target_macs": config.target_macs,
                "target_params": config.target_params,
                "target_latency": config.target_latency,
            },
            **({"latency_ranking": config.latency_ranking} if config.target_latency is not None else {}),
            "prune_heads": config.prune_heads or config.whole_heads,
            "whole_heads": config.whole_heads,
            "round_to": config.round_to,
            "normalization": normalization,
            "max_share": config.max_share,
            **({"cost_exponent": cost_exponent} if cost_exponent is not None else {}),
            "compensated": config.compensate,
            **({"compensation": config.compensation} if config.compensate else {}),
            "floors": vars(Floors.for_config(config.round_to, config.allow_narrow)),
            "calibration_samples": sum(len(x) for x, _ in calib_batches),
            "macs": {"before": before["macs"], "after": after["macs"]},
            "params": {"before": before["params"], "after": after["params"]},
            "units": {
                "before": plan.units_total,
                "after": plan.units_total - plan.units_removed_count,
                "removed_fraction": plan.removed_fraction,
            },
            "achieved": {
                "macs_kept": after["macs"] / before["macs"],
                "params_kept": after["params"] / before["params"],
                "units_removed": plan.removed_fraction,
            },
            "blocks": [
                {"index": i, "before": b, "after": a}
                for i, (b, a) in enumerate(zip(before["blocks"], after["blocks"], strict=True))
            ],
        }
    )
