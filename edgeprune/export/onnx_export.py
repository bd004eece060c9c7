"""The slimmed PyTorch graph to ONNX (dynamic batch), checked by onnx.checker and by parity against torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from edgeprune.export.compare import Comparison, compare_logits
from edgeprune.export.layer_scale import fold_layer_scale
from edgeprune.export.runners import OrtRunner
from edgeprune.prune.counting import input_size
from edgeprune.requests import DEFAULT_OPSET
from edgeprune.workspace import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """TorchScript-based export (`dynamo=False`): stable for timm ViTs and needs no onnxscript. Layer scales are
    folded into the linear layers before them (the model passed is left as it is)."""
    model, _ = fold_layer_scale(model.cpu().eval())
    dummy = torch.zeros(1, 3, *input_size(model))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
        onnx.checker.check_model(str(tmp), full_check=True)


@torch.no_grad()
def parity(onnx_path: Path, model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> Comparison:
    """Max |torch - onnxruntime| over the logits and their top-1 agreement, on real images."""
    model = model.cpu().eval()
    with OrtRunner(onnx_path) as runner:
        batches = (images[start : start + batch_size] for start in range(0, len(images), batch_size))
        return compare_logits((model(x).numpy(), runner.infer(x.numpy())) for x in batches)
