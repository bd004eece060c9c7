"""Models at chosen widths, pruned by the same path as real pruned models (so that they export the same graph):
`depth` identical blocks at the given widths, with the model's fixed parts (patch embedding, positions, head)."""

from __future__ import annotations

import timm
from torch import nn

from edgeprune.latency.widths import Widths, model_widths
from edgeprune.models.registry import ModelSpec
from edgeprune.prune.adapters import adapter_for
from edgeprune.prune.importance import scorer
from edgeprune.prune.pruner import apply_plan, build_graph, find_groups
from edgeprune.prune.selection import Plan

PROBE_CLASSES = 7


def probe_model(spec: ModelSpec, depth: int, widths: Widths) -> nn.Module:
    kwargs = dict(spec.create_kwargs, num_classes=PROBE_CLASSES, depth=depth)
    if depth == 0:  # the fixed parts alone: made at the width (torch-pruning cannot trace a model with no block)
        kwargs.update(embed_dim=widths.embed)
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs).eval()
    model = timm.create_model(spec.timm_name, pretrained=False, **kwargs).eval()
    full = model_widths(model)[0]
    if any(getattr(widths, k) > getattr(full, k) for k in ("embed", "heads", "head_dim", "mlp")):
        raise ValueError(f"probe widths {widths} exceed the model's {full}")
    adapter = adapter_for(model, spec.timm_name)
    adapter.prepare(model)
    groups = find_groups(model, build_graph(model, adapter), adapter, scorer("l2"))
    plan = Plan(units_total=sum(g.size for g in groups))
    for group in groups:
        if group.kind == "embedding":
            plan.units_removed[group.root] = list(range(full.embed - widths.embed))
        elif group.kind == "mlp":
            plan.units_removed[group.root] = list(range(full.mlp - widths.mlp))
        elif group.kind == "attention":
            plan.units_removed[group.root] = list(range(full.head_dim - widths.head_dim))
            plan.heads_removed[group.root] = list(range(full.heads - widths.heads))
    apply_plan(model, adapter, groups, plan)
    return model.eval()
