"""Layer scale folded into the linear layer before it, for export.

BEiT (`gamma_1`, `gamma_2`) and DeiT-III (`ls1`, `ls2`) multiply each residual branch by a learnt per-channel
vector: gamma * (W x + b) = (gamma W) x + gamma b. Folded, the exported graph loses a Mul per branch, which counts
in a pruned model, whose elementwise ops shrink less than its matmuls.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _scale_output(linear: nn.Module, gamma: torch.Tensor) -> None:
    linear.weight.mul_(gamma[:, None])
    if linear.bias is not None:
        linear.bias.mul_(gamma)


# Each residual branch: BEiT's gamma parameter, DeiT III's LayerScale module, and the linear layer that ends the branch.
_BRANCHES = (
    ("gamma_1", "ls1", lambda block: block.attn.proj),
    ("gamma_2", "ls2", lambda block: block.mlp.fc2),
)


@torch.no_grad()
def fold_layer_scale(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` with every layer scale folded (the model itself if it has none), and how many were."""
    folded, count = None, 0
    for index, block in enumerate(getattr(model, "blocks", [])):
        for gamma_name, module_name, linear_of in _BRANCHES:
            gamma = getattr(block, gamma_name, None)
            scale = getattr(block, module_name, None)
            if gamma is None and not hasattr(scale, "gamma"):
                continue
            if folded is None:
                folded = copy.deepcopy(model)
            target = folded.blocks[index]
            if gamma is not None:
                _scale_output(linear_of(target), getattr(target, gamma_name))
                setattr(target, gamma_name, None)  # timm's BEiT block skips the product when gamma is None
            else:
                _scale_output(linear_of(target), getattr(target, module_name).gamma)
                setattr(target, module_name, nn.Identity())
            count += 1
    return (folded if folded is not None else model), count
