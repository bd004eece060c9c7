"""Attention modules of timm transformers: finding them, keeping their attributes in step with their weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if hasattr(m, "num_heads") and hasattr(m, "qkv")}


def sync_attention_attrs(attn: nn.Module, num_heads: int) -> None:
    """Make num_heads / head_dim / attn_dim / scale agree with the (pruned) qkv weights.

    The scale is head_dim ** -0.5 of the *current* width, which is also what timm's fused kernel uses; a pruned
    model keeps its original softmax temperature because `fold_softmax_scale` moved the difference into q.
    """
    qkv_out = attn.qkv.out_features
    if qkv_out % (3 * num_heads):
        raise ValueError(f"qkv width {qkv_out} is not divisible by 3 x {num_heads} heads")
    head_dim = qkv_out // (3 * num_heads)
    attn.num_heads = num_heads
    attn.head_dim = head_dim
    if hasattr(attn, "attn_dim"):
        attn.attn_dim = num_heads * head_dim
    attn.scale = head_dim**-0.5


@torch.no_grad()
def fold_softmax_scale(attn: nn.Module, num_heads: int) -> None:
    """Scale q so that softmax(q k^T * new_scale) equals the unpruned softmax(q k^T * attn.scale).

    Called after head dims were pruned and before `sync_attention_attrs`: q's rows of the qkv weight (and of its
    bias, or BEiT's q_bias) are multiplied by old_scale / new_scale = sqrt(d_new / d_old), so the fused and
    unfused paths and the exported ONNX all compute the original logits with the standard head_dim ** -0.5.
    """
    head_dim = attn.qkv.out_features // (3 * num_heads)
    factor = attn.scale / head_dim**-0.5
    if abs(factor - 1.0) < 1e-12:
        return
    q_rows = num_heads * head_dim
    attn.qkv.weight[:q_rows] *= factor
    if attn.qkv.bias is not None:
        attn.qkv.bias[:q_rows] *= factor
    if getattr(attn, "q_bias", None) is not None:
        attn.q_bias *= factor


@contextlib.contextmanager
def unfused_attention(model: nn.Module) -> Iterator[None]:
    """The explicit softmax(QK^T)V path: vmap has batching rules for it and FlopCounterMode counts its matmuls
    (torch 2.14 counts no FLOPs for the fused CPU kernel)."""
    saved = {m: m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
    for m in saved:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, value in saved.items():
            m.fused_attn = value
