"""Give back what removed units contributed: on average (bias compensation, as FLAP does for LLMs), or as their
least-squares fit on the units that are left (a layer-wise reconstruction, as post-training pruning of BERT by
Kwon et al. 2022 and OBS-style weight updates do).

Measured on calibration data with the unpruned model, before any layer is cut:
- a Linear whose input channels go (fc2 after MLP hidden units, proj after attention channels, qkv / fc1 / the
  classifier after embedding channels) gets W[:, removed] @ E[x_removed] added to its bias; with `fit`, the removed
  inputs are regressed on the kept ones instead and the fit is folded into its weights and bias (`_regression`);
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
    weight_delta: dict[nn.Linear, torch.Tensor] = field(default_factory=dict)  # kept outputs x kept inputs
    norm_scale: dict[nn.LayerNorm, float] = field(default_factory=dict)
    norm_shift: dict[nn.LayerNorm, float] = field(default_factory=dict)

    @torch.no_grad()
    def apply(self) -> None:
        """Fold the corrections into the pruned layers."""
        for linear, delta in self.bias_delta.items():
            if linear.bias is not None:
                linear.bias += delta.to(linear.bias.dtype)
        for linear, delta in self.weight_delta.items():
            linear.weight += delta.to(linear.weight.dtype)
        for norm, scale in self.norm_scale.items():
            if norm.bias is not None:
                norm.bias += norm.weight * self.norm_shift[norm]
            norm.weight *= scale


def _kept(size: int, removed: Sequence[int]) -> torch.Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[list(removed)] = False
    return mask


@torch.no_grad()
def measure_compensation(model: nn.Module, cuts: Cuts, batches: Sequence[Batch], fit: bool = False) -> Compensation:
    """One pass of the unpruned model over `batches`, collecting what `Compensation.apply` needs.

    With `fit`, a linear layer whose inputs go also gets the least-squares fit of the removed inputs on the kept
    ones folded into its weights (the mean compensation is the case where the fit is a constant)."""
    input_sum: dict[nn.Linear, torch.Tensor] = {}
    gram: dict[nn.Linear, torch.Tensor] = {}
    rows: dict[nn.Module, int] = {}
    ratio_sum: dict[nn.LayerNorm, float] = {}
    shift_sum: dict[nn.LayerNorm, float] = {}

    def linear_hook(module: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
        input_sum[module] = input_sum.get(module, 0) + x.sum(0, dtype=torch.float64)
        rows[module] = rows.get(module, 0) + len(x)
        if fit:  # products in float32 (fast), sums over batches in float64
            gram[module] = gram.get(module, 0) + (x.T @ x).double()

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
        outputs = _kept(linear.out_features, cuts.linear_out.get(linear, []))
        if linear in gram:
            weight_delta, bias_delta = _regression(
                linear.weight.double(), gram[linear], input_sum[linear], rows[linear], removed
            )
            result.weight_delta[linear] = weight_delta[outputs]
            result.bias_delta[linear] = bias_delta[outputs]
            continue
        mean = (input_sum[linear] / rows[linear]).to(linear.weight.dtype)
        delta = linear.weight[:, removed] @ mean[removed]
        result.bias_delta[linear] = delta[outputs]
    for norm in ratio_sum:
        result.norm_scale[norm] = ratio_sum[norm] / rows[norm]
        result.norm_shift[norm] = shift_sum[norm] / rows[norm]
    return result


def _regression(
    weight: torch.Tensor, gram: torch.Tensor, total: torch.Tensor, rows: int, removed: Sequence[int], damp: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias corrections that stand in for removed inputs by their linear fit on the kept ones.

    x_R ~ mu_R + B (x_K - mu_K) with B = C_RK C_KK^-1 (C: input covariance, C_KK damped by `damp` times its mean
    diagonal), so W x = W_K x_K + W_R x_R ~ (W_K + W_R B) x_K + W_R (mu_R - B mu_K).
    """
    kept = _kept(weight.shape[1], removed)
    mean = total / rows
    cov = gram / rows - torch.outer(mean, mean)
    cov_kk, cov_rk = cov[kept][:, kept], cov[~kept][:, kept]
    cov_kk = cov_kk + damp * cov_kk.diagonal().mean() * torch.eye(len(cov_kk), dtype=cov.dtype)
    fit = torch.linalg.solve(cov_kk, cov_rk.T).T  # B: removed x kept
    w_removed = weight[:, ~kept]
    return w_removed @ fit, w_removed @ (mean[~kept] - fit @ mean[kept])
