"""Model aliases: the paper's models, sized variants, tiny configurations for demos and tests, any timm name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from edgeprune.errors import EdgepruneError

# Tiny transformer shape used by the demo and the tests: 4 blocks, width 96, 3 heads, 64x64 input, 8x8 patches.
_MICRO = {"img_size": 64, "patch_size": 8, "depth": 4, "embed_dim": 96, "num_heads": 3}
# Trained from scratch on a few thousand images, average pooling learns faster than a class token.
_MICRO_AVG_POOL = {**_MICRO, "global_pool": "avg", "class_token": False}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    timm_name: str
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    bundled_weights: str | None = None  # a file in edgeprune/assets: the default weights, offline


ALIASES: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("vit", "vit_base_patch16_224", description="ViT-B/16 (paper)"),
        ModelSpec("deit", "deit_base_patch16_224", description="DeiT-B/16 (paper)"),
        ModelSpec("beit", "beit_base_patch16_224", description="BEiT-B/16 (paper)"),
        ModelSpec("vit-tiny", "vit_tiny_patch16_224", description="ViT-Ti/16"),
        ModelSpec("vit-small", "vit_small_patch16_224", description="ViT-S/16"),
        ModelSpec("vit-base", "vit_base_patch16_224", description="ViT-B/16"),
        ModelSpec("vit-large", "vit_large_patch16_224", description="ViT-L/16"),
        ModelSpec("deit-tiny", "deit_tiny_patch16_224", description="DeiT-Ti/16"),
        ModelSpec("deit-small", "deit_small_patch16_224", description="DeiT-S/16"),
        ModelSpec("deit-base", "deit_base_patch16_224", description="DeiT-B/16"),
        ModelSpec("beit-base", "beit_base_patch16_224", description="BEiT-B/16"),
        ModelSpec("beit-large", "beit_large_patch16_224", description="BEiT-L/16"),
        ModelSpec(
            "vit-micro",
            "vit_tiny_patch16_224",
            _MICRO_AVG_POOL,
            "4-block ViT at 64 px, avg pool (demo, tests); bundled weights: pre-trained on photographs",
            bundled_weights="vit-micro-photos.safetensors",
        ),
        ModelSpec("deit-micro", "deit_tiny_patch16_224", _MICRO, "4-block DeiT at 64 px, class token (tests)"),
    ]
}


_FAMILIES = ("vit", "deit", "beit")  # what a timm name of a supported family contains


def resolve_model(name: str) -> ModelSpec:
    """An alias (`deit-tiny`) or any timm model name (`vit_small_patch32_224`)."""
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    if not any(family in key.lower() for family in _FAMILIES):  # refused before importing torch (seconds)
        raise EdgepruneError(
            f"unknown model '{name}': edgeprune prunes ViT, DeiT and BEiT models: use an alias ({', '.join(ALIASES)}) "
            "or the timm name of one (vit_*, deit_*, deit3_*, beit_*, ...)"
        )
    import timm

    if timm.is_model(key):
        return ModelSpec(key, key)
    candidates = list(ALIASES) + timm.list_models("*vit*") + timm.list_models("*beit*")
    close = difflib.get_close_matches(key.lower(), candidates, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise EdgepruneError(f"unknown model '{name}': use an alias ({', '.join(ALIASES)}) or a timm model name.{hint}")
