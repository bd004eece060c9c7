"""Importance metrics for grouped pruning: l1, l2, taylor, hessian (diagonal OBD / empirical Fisher), random.

torch-pruning scores a group from each parameter's `.grad`; for `taylor` that holds the summed loss gradient, for
`hessian` we write E[g^2] there, computed from batched per-sample gradients (torch.func) over all calibration
samples. torch-pruning 1.6's own `accumulate_grad` keeps only the last sample's g^2, so it is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, grad, vmap

from edgeprune.config import METRICS
from edgeprune.errors import EdgepruneError
from edgeprune.models.attention import unfused_attention

Batch = tuple[torch.Tensor, torch.Tensor]

# Per-sample gradients of all parameters are held for one chunk at a time: about 1 GiB of float32.
_PER_SAMPLE_GRAD_BUDGET = 256 * 1024 * 1024


def fisher_diagonal(
    model: nn.Module, batches: Sequence[Batch], chunk_size: int | None = None
) -> dict[str, torch.Tensor]:
    """E[g^2] per parameter over every sample, g being the per-sample gradient of the cross-entropy loss."""
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    if chunk_size is None:
        chunk_size = max(1, min(64, _PER_SAMPLE_GRAD_BUDGET // max(n_params, 1)))

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    sums = {k: torch.zeros_like(p) for k, p in params.items()}
    n_samples = 0
    was_training = model.training
    model.eval()
    with unfused_attention(model):
        for x, y in batches:
            for start in range(0, len(x), chunk_size):
                grads = per_sample_grads(params, x[start : start + chunk_size], y[start : start + chunk_size])
                for k, g in grads.items():
                    sums[k] += g.pow(2).sum(0)
            n_samples += len(x)
    model.train(was_training)
    if n_samples == 0:
        raise EdgepruneError("the hessian metric needs calibration samples, and none were given")
    return {k: s / n_samples for k, s in sums.items()}


def accumulate_loss_gradient(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Leave the mean cross-entropy gradient over all batches in each parameter's `.grad` (for taylor)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    total = sum(len(x) for x, _ in batches)
    for x, y in batches:
        loss = F.cross_entropy(model(x), y, reduction="sum") / total
        loss.backward()


# Scores summed over every layer of a group and left unnormalised: for hessian that is the OBD estimate of the loss
# increase, comparable across groups; `selection` applies the normalisation asked for.
_RAW = {"group_reduction": "sum", "normalizer": None}


def scorer(metric: str) -> tp.importance.Importance:
    """torch-pruning's scorer for `metric`; gradient metrics read what `build_importance` left in `.grad`."""
    if metric == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, **_RAW)
    if metric == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, **_RAW)
    if metric == "random":
        return tp.importance.RandomImportance()
    if metric == "taylor":
        return tp.importance.GroupTaylorImportance(**_RAW)
    if metric == "hessian":
        # With nothing accumulated, the stock scorer reads E[g^2] from .grad and computes w^2 * E[g^2].
        return tp.importance.GroupHessianImportance(**_RAW)
    raise EdgepruneError(f"unknown metric '{metric}': choose one of {', '.join(METRICS)}")


def build_importance(metric: str, model: nn.Module, batches: Sequence[Batch]) -> tp.importance.Importance:
    """The scorer for `metric`; gradient metrics also fill `.grad` of the model's parameters."""
    if metric == "taylor":
        accumulate_loss_gradient(model, batches)
    elif metric == "hessian":
        fisher = fisher_diagonal(model, batches)
        for name, p in model.named_parameters():
            if name in fisher:
                p.grad = fisher[name]
    return scorer(metric)
