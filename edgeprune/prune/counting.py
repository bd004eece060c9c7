"""MACs and parameters counted over every matmul the model runs (functional `F.linear` and attention included)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgeprune.models.attention import unfused_attention


def input_size(model: nn.Module) -> tuple[int, int]:
    size = model.patch_embed.img_size
    return (size, size) if isinstance(size, int) else tuple(size)


@torch.no_grad()
def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass on one image (FlopCounterMode counts 2 FLOPs per MAC).

    Attention runs unfused while counting: torch 2.14 counts no FLOPs for the fused CPU attention kernel.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *input_size(model), device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter, unfused_attention(model):
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
