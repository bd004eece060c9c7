"""Grouped structural global pruning of timm vision transformers over torch-pruning's DependencyGraph."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.models.artifact import attention_modules, sync_attention_attrs
from edgeprune.models.loading import classifier_names
from edgeprune.prune.counting import count_macs, count_params, input_size
from edgeprune.prune.importance import METRICS, Batch, build_importance

_EMBEDDING_PARAMS = ("cls_token", "dist_token", "reg_token", "pos_embed")


@dataclass(frozen=True)
class PruneConfig:
    metric: str = "hessian"
    ratio: float = 0.5
    prune_heads: bool = False
    round_to: int | None = None

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise EdgepruneError(f"unknown metric '{self.metric}': choose one of {', '.join(METRICS)}")
        if not 0.0 < self.ratio < 1.0:
            raise EdgepruneError(f"--ratio must be strictly between 0 and 1 (got {self.ratio})")
        if self.round_to is not None and self.round_to < 1:
            raise EdgepruneError(f"--round-to must be a positive integer (got {self.round_to})")


def check_prunable(model: nn.Module, timm_name: str) -> None:
    if isinstance(model, VisionTransformer):
        return
    if timm_name.startswith("beit"):
        raise EdgepruneError(
            f"{timm_name}: BEiT pruning is not supported yet (its q_bias/v_bias, relative position bias table "
            "and gamma_1/gamma_2 must follow the pruned channels); prune a ViT or DeiT model for now"
        )
    raise EdgepruneError(
        f"{timm_name} ({type(model).__name__}) is not a timm VisionTransformer: only ViT and DeiT models can be pruned"
    )


def block_widths(model: nn.Module) -> list[dict[str, int]]:
    widths = []
    for block in model.blocks:
        attn = block.attn
        widths.append(
            {
                "embed_dim": int(block.norm1.weight.shape[0]),
                "heads": int(attn.num_heads),
                "head_dim": int(attn.head_dim),
                "mlp_hidden": int(block.mlp.fc1.out_features),
            }
        )
    return widths


def prune_model(
    model: nn.Module, timm_name: str, config: PruneConfig, calib_batches: Sequence[Batch]
) -> dict[str, Any]:
    """Prune `model` in place; returns the prune report (MACs, params and per-block widths before and after)."""
    config.validate()
    check_prunable(model, timm_name)
    before = {"macs": count_macs(model), "params": count_params(model), "blocks": block_widths(model)}

    importance = build_importance(config.metric, model, calib_batches)
    heads = [
        getattr(model, name) for name in classifier_names(model) if isinstance(getattr(model, name, None), nn.Module)
    ]
    num_heads = {attn.qkv: attn.num_heads for attn in attention_modules(model).values()}
    # Token and position embeddings are bare parameters whose last dimension is the embedding width.
    embeddings = [(p, p.dim() - 1) for name, p in model.named_parameters() if name in _EMBEDDING_PARAMS]
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=torch.zeros(1, 3, *input_size(model)),
        importance=importance,
        global_pruning=True,
        pruning_ratio=config.ratio,
        ignored_layers=heads,
        num_heads=num_heads,
        prune_num_heads=config.prune_heads,
        prune_head_dims=True,
        head_pruning_ratio=config.ratio if config.prune_heads else 0.0,
        round_to=config.round_to,
        unwrapped_parameters=embeddings,
    )
    pruner.step()
    for attn in attention_modules(model).values():
        sync_attention_attrs(attn, pruner.num_heads[attn.qkv])
    model.zero_grad(set_to_none=True)

    after = {"macs": count_macs(model), "params": count_params(model), "blocks": block_widths(model)}
    return {
        "model": timm_name,
        "metric": config.metric,
        "ratio": config.ratio,
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
