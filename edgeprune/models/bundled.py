"""Weights shipped inside the package (edgeprune/assets): vit-micro pre-trained by `scripts/pretrain_micro.py`.

Each weights file has a JSON sidecar (`<file>.json`) saying how it was made (script, options, seed, the
pre-training set) and its sha256, which is checked before the weights are used. Bundled weights carry no
classifier: the task's head is always new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.workspace import file_sha256, read_json

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def sidecar_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".json")


def bundled_path(file_name: str) -> Path:
    """The bundled weights file, checked against its sidecar's sha256."""
    path = ASSETS / file_name
    try:
        expected = read_json(sidecar_path(path))["sha256"]
    except (EdgepruneError, KeyError, TypeError):
        raise EdgepruneError(
            f"bundled weights {path} or their record are missing: reinstall edgeprune or run scripts/pretrain_micro.py"
        ) from None
    if not path.is_file():
        raise EdgepruneError(
            f"bundled weights {path} are missing: reinstall edgeprune or run scripts/pretrain_micro.py"
        )
    if file_sha256(path) != expected:
        raise EdgepruneError(f"bundled weights {path} do not match the sha256 in their record: reinstall edgeprune")
    return path


def bundled_record(file_name: str) -> dict[str, Any]:
    return read_json(sidecar_path(ASSETS / file_name))


def strip_classifier(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors without its classifier, contiguous, on the CPU."""
    from edgeprune.models.loading import classifier_names

    heads = tuple(f"{name}." for name in classifier_names(model))
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith(heads)}
