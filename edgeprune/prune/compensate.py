"""Give back, on average, what removed units contributed (bias compensation, as FLAP does for LLMs).

Measured on calibration data with the unpruned model, before any layer is cut:
- a Linear whose input channels go (fc2 after MLP hidden units, proj after attention channels, qkv / fc1 / the
  classifier after embedding channels) gets W[:, removed] @ E[x_removed] added to its bias;
- a LayerNorm over the residual stream whose channels go normalises with the mean and spread of the channels
  that are left; its weight and bias are corrected by E[sigma_kept / sigma] and E[(mu_kept - mu) / sigma] so that
  the kept channels come out as they did before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Cuts:
    """What a plan removes, per layer, in the unpruned model's indices."""

    linear_in: dict[nn.Linear, list[int]] = field(default_factory=dict)
    linear_out: dict[nn.Linear, list[int]] = field(default_factory=dict)
    norm: dict[nn.LayerNorm, list[int]] = field(default_factory=dict)

    def add(self, group: tp.Group) -> None:
        for dep, idxs in group:
            module, handler = dep.target.module, getattr(dep.handler, "__name__", "")
            indices = [int(i) for i in idxs]
            if isinstance(module, nn.Linear) and handler == "prune_in_channels":
                self.linear_in.setdefault(module, []).extend(indices)
            elif isinstance(module, nn.Linear) and handler == "prune_out_channels":
                self.linear_out.setdefault(module, []).extend(indices)
            elif isinstance(module, nn.LayerNorm):
                self.norm.setdefault(module, []).extend(indices)


@dataclass
class Compensation:
    bias_delta: dict[nn.Linear, torch.Tensor] = field(default_factory=dict)  # over the linear's kept outputs
    norm_scale: dict[nn.LayerNorm, float] = field(default_factory=dict)
    norm_shift: dict[nn.LayerNorm, float] = field(default_factory=dict)

    @torch.no_grad()
    def apply(self) -> None:
        """Fold the corrections into the pruned layers."""
        for linear, delta in self.bias_delta.items():
            if linear.bias is not None:
                linear.bias += delta.to(linear.bias.dtype)
        for norm, scale in self.norm_scale.items():
            if norm.bias is not None:
                norm.bias += norm.weight * self.norm_shift[norm]
            norm.weight *= scale


def _kept(size: int, removed: Sequence[int]) -> torch.Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[list(removed)] = False
    return mask


@torch.no_grad()
def measure_compensation(model: nn.Module, cuts: Cuts, batches: Sequence[Batch]) -> Compensation:
    """One pass of the unpruned model over `batches`, collecting what `Compensation.apply` needs."""
    input_sum: dict[nn.Linear, torch.Tensor] = {}
    rows: dict[nn.Module, int] = {}
    ratio_sum: dict[nn.LayerNorm, float] = {}
    shift_sum: dict[nn.LayerNorm, float] = {}

    def linear_hook(module: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
        input_sum[module] = input_sum.get(module, 0) + x.sum(0)
        rows[module] = rows.get(module, 0) + len(x)

    def norm_hook(module: nn.LayerNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
        kept = x[:, _kept(x.shape[1], cuts.norm[module])]
        mu, sigma = x.mean(1), (x.var(1, unbiased=False) + module.eps).sqrt()
        mu_kept, sigma_kept = kept.mean(1), (kept.var(1, unbiased=False) + module.eps).sqrt()
        ratio_sum[module] = ratio_sum.get(module, 0.0) + float((sigma_kept / sigma).sum())
        shift_sum[module] = shift_sum.get(module, 0.0) + float(((mu_kept - mu) / sigma).sum())
        rows[module] = rows.get(module, 0) + len(x)

    handles = [m.register_forward_pre_hook(linear_hook) for m in cuts.linear_in]
    handles += [m.register_forward_pre_hook(norm_hook) for m in cuts.norm if len(cuts.norm[m]) < m.weight.numel()]
    was_training = model.training
    model.eval()
    try:
        for x, _ in batches:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    result = Compensation()
    for linear, removed in cuts.linear_in.items():
        if linear not in input_sum or linear.bias is None:
            continue
        mean = (input_sum[linear] / rows[linear]).to(linear.weight.dtype)
        delta = linear.weight[:, removed] @ mean[removed]
        result.bias_delta[linear] = delta[_kept(linear.out_features, cuts.linear_out.get(linear, []))]
    for norm in ratio_sum:
        result.norm_scale[norm] = ratio_sum[norm] / rows[norm]
        result.norm_shift[norm] = shift_sum[norm] / rows[norm]
    return result
