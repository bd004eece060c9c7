"""Create a timm model with weights from a file, timm's hub or an explicit random init, head adapted to the task."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.models.registry import ModelSpec

PICKLE_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt"}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a .pth state dict (never unpickles arbitrary objects)."""
    if not path.is_file():
        raise EdgepruneError(f"checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif suffix in PICKLE_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise EdgepruneError(
                f"checkpoint {path} has an unsupported type '{suffix}': give a .safetensors file or a .pth state dict"
            )
    except EdgepruneError:
        raise
    except Exception as exc:  # corrupt or foreign file: say what it is, and what to give instead
        raise EdgepruneError(f"could not read checkpoint {path}: {_why_unreadable(exc, suffix)}. {_GIVE}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgepruneError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


_GIVE = (
    "Give a state dict: a .safetensors file (safetensors.torch.save_file(model.state_dict(), path)) or a .pth "
    "file saved with torch.save(model.state_dict(), path)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _why_unreadable(exc: Exception, suffix: str) -> str:
    text = _ANSI.sub("", str(exc))
    if suffix in PICKLE_SUFFIXES and "weights_only" in text:
        return "it holds pickled Python objects (a whole model?), which edgeprune does not unpickle"
    if suffix == ".safetensors":
        return f"not a valid .safetensors file ({' '.join(text.split())[:120] or type(exc).__name__})"
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first_line[:200]


def classifier_names(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier", "head")
    return [names] if isinstance(names, str) else list(names)


def load_checkpoint_into(model: nn.Module, path: Path, timm_name: str) -> bool:
    """Load weights; the classifier is kept only if its shape fits, so a 1000-class file adapts to any task.
    Returns whether the classifier came from the file (False: it is freshly initialised for the task)."""
    state = read_state_dict(path)
    own = model.state_dict()
    heads = tuple(f"{name}." for name in classifier_names(model))
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not k.startswith(heads)]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.startswith(heads)]
    if mismatched or unexpected or missing:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            details.append(
                f"{len(mismatched)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        raise EdgepruneError(
            f"checkpoint {path} does not fit {timm_name}: tensors {'; '.join(details)}. "
            "Pick the --model the checkpoint was trained as."
        )
    state = {k: v for k, v in state.items() if own[k].shape == v.shape}
    model.load_state_dict(state, strict=False)
    return all(k in state for k in own if k.startswith(heads))


def require_weights_source(
    spec: ModelSpec,
    checkpoint: Path | None,
    random_init: bool,
    hint: str = "use --random-init or --checkpoint FILE",
) -> None:
    """A custom configuration has no published weights: it needs bundled weights, a checkpoint or random init."""
    if spec.create_kwargs and not spec.bundled_weights and checkpoint is None and not random_init:
        raise EdgepruneError(f"'{spec.name}' is a custom configuration with no published weights: {hint}")


def create_model(
    spec: ModelSpec,
    num_classes: int,
    *,
    checkpoint: Path | None = None,
    random_init: bool = False,
) -> nn.Module:
    return create_task_model(spec, num_classes, checkpoint=checkpoint, random_init=random_init)[0]


def create_task_model(
    spec: ModelSpec,
    num_classes: int,
    *,
    checkpoint: Path | None = None,
    random_init: bool = False,
) -> tuple[nn.Module, bool]:
    """The model, and whether its classifier is trained for this task already (False: random, or re-initialised
    because the weights were made for other classes)."""
    if checkpoint is not None and random_init:
        raise EdgepruneError("--checkpoint and --random-init exclude each other: give one")
    kwargs = dict(spec.create_kwargs, num_classes=num_classes)
    if checkpoint is not None or random_init:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        head_loaded = checkpoint is not None and load_checkpoint_into(model, checkpoint, spec.timm_name)
        return model, head_loaded
    require_weights_source(spec, checkpoint, random_init)
    if spec.bundled_weights:  # shipped in edgeprune/assets, without a classifier
        from edgeprune.models.bundled import bundled_path

        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        load_checkpoint_into(model, bundled_path(spec.bundled_weights), spec.timm_name)
        return model, False
    online = _hub_reachable()
    if not online:
        _hub_offline()  # weights already in the local cache still load; others fail at once, not after retries
    try:
        model = timm.create_model(spec.timm_name, pretrained=True, **kwargs)
    except Exception:
        why = "could not fetch them" if online else "the Hugging Face hub is unreachable and they are not cached here"
        raise EdgepruneError(
            f"no pretrained weights for {spec.timm_name}: {why}. "
            "Give --checkpoint FILE (.safetensors, or a .pth state dict) or, for latency studies, --random-init"
        ) from None
    published_classes = (getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
    return model, published_classes == num_classes


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP probe of the Hugging Face endpoint (assumed reachable behind a proxy, which the probe cannot
    judge)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout_s).close()
    except OSError:
        return False
    return True


def _hub_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True  # read at import time by some versions
    except ImportError:
        pass
