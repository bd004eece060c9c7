"""BEiT attention whose heads may be narrower than the embedding.

timm's BEiT attention reshapes its output to the *input* width, which only holds while heads x head_dim equals
the embedding width. Pruning breaks that, so pruned BEiT models swap their attention modules for this subclass,
identical except that the output keeps the attention width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import beit
from torch import nn


class SlimBeitAttention(beit.Attention):
    def forward(self, x: torch.Tensor, shared_rel_pos_bias: torch.Tensor | None = None) -> torch.Tensor:
        batch, tokens, _ = x.shape
        if self.q_bias is None:  # also the folded form used while pruning: the qkv module must be called
            qkv = self.qkv(x)
        else:
            qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, self.k_bias, self.v_bias)))
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

        position_bias = self._get_rel_pos_bias() if self.relative_position_bias_table is not None else None
        if shared_rel_pos_bias is not None:
            position_bias = shared_rel_pos_bias if position_bias is None else position_bias + shared_rel_pos_bias
        if self.fused_attn:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=position_bias, dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if position_bias is not None:
                scores = scores + position_bias
            out = self.attn_drop(scores.softmax(dim=-1)) @ v
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        return self.proj_drop(self.proj(out))


def use_slim_beit_attention(model: nn.Module) -> None:
    for module in model.modules():
        if type(module) is beit.Attention:
            module.__class__ = SlimBeitAttention
