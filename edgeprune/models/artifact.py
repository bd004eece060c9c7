"""Save a (possibly pruned) model as an architecture description + safetensors, and rebuild it without pickle.

The description names the timm architecture and its creation kwargs, then lists the shape of every tensor and
the head counts of every attention module. Loading creates the unpruned architecture, shrinks each layer to the
recorded shapes and loads the weights strictly, so a tampered or mismatched file fails loudly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.models.attention import attention_modules, sync_attention_attrs
from edgeprune.models.beit_attention import use_slim_beit_attention
from edgeprune.workspace import atomic_path, atomic_write_json, read_json

ARCH_FORMAT = "edgeprune-arch/1"
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
_ATTENTION_INT_ATTRS = ("num_heads", "head_dim", "attn_dim")


def describe(model: nn.Module, timm_name: str, create_kwargs: dict[str, Any]) -> dict[str, Any]:
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    attention = {
        name: {a: int(getattr(m, a)) for a in _ATTENTION_INT_ATTRS if hasattr(m, a)}
        for name, m in attention_modules(model).items()
    }
    return {
        "format": ARCH_FORMAT,
        "timm_name": timm_name,
        "create_kwargs": create_kwargs,
        "attention": attention,
        "shapes": shapes,
    }


def save_model(model: nn.Module, folder: Path, timm_name: str, create_kwargs: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(folder / ARCH_FILE, describe(model, timm_name, create_kwargs))


def _resize_module(module: nn.Module, tensor_name: str, shape: list[int]) -> None:
    old = getattr(module, tensor_name)
    new = torch.empty(shape, dtype=old.dtype)
    if isinstance(old, nn.Parameter):
        setattr(module, tensor_name, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        module.register_buffer(tensor_name, new)
    if isinstance(module, nn.Linear) and tensor_name == "weight":
        module.out_features, module.in_features = shape
    elif isinstance(module, nn.LayerNorm) and tensor_name == "weight":
        module.normalized_shape = (shape[0],)
    elif isinstance(module, nn.Conv2d) and tensor_name == "weight":
        module.out_channels, module.in_channels = shape[0], shape[1] * module.groups


def build_from_description(desc: dict[str, Any]) -> nn.Module:
    if desc.get("format") != ARCH_FORMAT:
        raise EdgepruneError(f"unknown architecture format {desc.get('format')!r} (expected {ARCH_FORMAT})")
    model = timm.create_model(desc["timm_name"], pretrained=False, **desc["create_kwargs"])
    use_slim_beit_attention(model)
    modules = dict(model.named_modules())
    own = model.state_dict()
    for key, shape in desc["shapes"].items():
        if key not in own:
            raise EdgepruneError(f"architecture description names {key}, which {desc['timm_name']} does not have")
        if list(own[key].shape) != shape:
            module_name, _, tensor_name = key.rpartition(".")
            _resize_module(modules[module_name], tensor_name, shape)
    for name, attrs in desc["attention"].items():
        attn = modules[name]
        if getattr(attn, "k_bias", None) is not None:  # BEiT's zero key bias is not saved: follow q_bias
            attn.register_buffer("k_bias", torch.zeros_like(attn.q_bias), persistent=False)
        sync_attention_attrs(attn, attrs["num_heads"])
    return model


def load_model(folder: Path) -> nn.Module:
    desc = read_json(folder / ARCH_FILE)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise EdgepruneError(f"{weights} is missing")
    model = build_from_description(desc)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:
        raise EdgepruneError(f"{weights} does not match {folder / ARCH_FILE}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def load_description(folder: Path) -> dict[str, Any]:
    return read_json(folder / ARCH_FILE)
