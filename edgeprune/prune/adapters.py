"""What differs between transformer families when their channels and heads are pruned.

An adapter says which bare parameters follow the embedding width, which must be left to it, and how to put the
model into a form torch-pruning's DependencyGraph can trace (and back): BEiT's q_bias / zero k_bias / v_bias are
folded into a plain qkv bias while pruning, and its per-head relative position bias table is sliced by the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models import beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.models.attention import attention_modules, fold_softmax_scale, sync_attention_attrs
from edgeprune.models.beit_attention import use_slim_beit_attention
from edgeprune.models.loading import classifier_names

# Bare parameters whose last dimension is the embedding width (tokens, positions, layer scale).
_EMBEDDING_LIKE = ("cls_token", "dist_token", "reg_token", "pos_embed", "gamma", "gamma_1", "gamma_2")


@dataclass
class FamilyAdapter:
    family: str

    def classifiers(self, model: nn.Module) -> list[nn.Module]:
        """Output layers that keep their width (DeiT-distilled has two)."""
        return [getattr(model, n) for n in classifier_names(model) if isinstance(getattr(model, n, None), nn.Module)]

    def unwrapped_parameters(self, model: nn.Module) -> list[tuple[nn.Parameter, int]]:
        return [(p, p.dim() - 1) for name, p in model.named_parameters() if name.rpartition(".")[2] in _EMBEDDING_LIKE]

    def ignored_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return []

    def prepare(self, model: nn.Module) -> None:
        """Put the model in the form the dependency graph traces."""

    def finish(self, model: nn.Module, kept_heads: dict[str, torch.Tensor], num_heads: dict[str, int]) -> None:
        """Undo `prepare` and make every attention module agree with its pruned weights (original softmax scale)."""
        for name, attn in attention_modules(model).items():
            fold_softmax_scale(attn, num_heads[name])
            sync_attention_attrs(attn, num_heads[name])


class BeitAdapter(FamilyAdapter):
    def ignored_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [
            attn.relative_position_bias_table
            for attn in _beit_attention(model)
            if attn.relative_position_bias_table is not None
        ]

    def prepare(self, model: nn.Module) -> None:
        use_slim_beit_attention(model)
        for attn in _beit_attention(model):
            if attn.q_bias is None:
                continue
            bias = torch.cat((attn.q_bias.data, torch.zeros_like(attn.q_bias.data), attn.v_bias.data))
            attn.qkv.bias = nn.Parameter(bias)
            attn.q_bias = attn.v_bias = None
            attn.k_bias = None
            attn.folded_bias = True

    def finish(self, model: nn.Module, kept_heads: dict[str, torch.Tensor], num_heads: dict[str, int]) -> None:
        for name, attn in attention_modules(model).items():
            table = attn.relative_position_bias_table
            if table is not None and name in kept_heads:
                attn.relative_position_bias_table = nn.Parameter(table.data[:, kept_heads[name]].clone())
            if getattr(attn, "folded_bias", False):
                q, _, v = attn.qkv.bias.data.chunk(3)
                attn.q_bias, attn.v_bias = nn.Parameter(q.clone()), nn.Parameter(v.clone())
                attn.register_buffer("k_bias", torch.zeros_like(q), persistent=False)
                attn.qkv.register_parameter("bias", None)
                del attn.folded_bias
        super().finish(model, kept_heads, num_heads)


def _beit_attention(model: nn.Module) -> list[beit.Attention]:
    return [m for m in model.modules() if isinstance(m, beit.Attention)]


def adapter_for(model: nn.Module, timm_name: str) -> FamilyAdapter:
    if isinstance(model, beit.Beit):
        if getattr(model, "rel_pos_bias", None) is not None:
            raise EdgepruneError(
                f"{timm_name} shares one relative position bias across blocks: not supported (per-block tables are)"
            )
        return BeitAdapter("beit")
    if isinstance(model, VisionTransformer):
        if any(
            not isinstance(getattr(attn, "q_norm", nn.Identity()), nn.Identity)
            for attn in attention_modules(model).values()
        ):
            raise EdgepruneError(f"{timm_name} normalises q and k per head (qk_norm): not supported yet")
        return FamilyAdapter("vit")
    raise EdgepruneError(
        f"{timm_name} ({type(model).__name__}) is not a supported family: edgeprune prunes timm VisionTransformer "
        "models (ViT, DeiT, DeiT III, with register tokens or layer scale) and BEiT / BEiTv2"
    )
