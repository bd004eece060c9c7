"""Layer scale (BEiT's gamma, DeiT-III's LayerScale) folded into the linear layer before it, at export."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgeprune.export.layer_scale import fold_layer_scale
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.runners import OrtRunner
from tests.test_prune import FAMILIES, _model, _pruned


@pytest.mark.parametrize("family", ["beit", "deit3"])
def test_a_folded_model_computes_what_the_model_computes_without_a_layer_scale_left(family: str) -> None:
    model, _ = _pruned(FAMILIES[family], metric="l2", ratio=0.5)
    for block in model.blocks:  # layer scales far from 1, so that a fold that missed one would show
        for gamma in (p for name, p in block.named_parameters() if "gamma" in name):
            gamma.data.uniform_(0.2, 3.0)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    folded, count = fold_layer_scale(model)
    assert count == 2 * len(model.blocks)
    assert not [name for name, _ in folded.named_parameters() if "gamma" in name]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() <= 1e-5
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())  # the model is untouched


def test_a_model_without_layer_scale_is_returned_as_it_is() -> None:
    model = _model(FAMILIES["deit"])
    assert fold_layer_scale(model) == (model, 0)


def test_the_exported_graph_has_no_layer_scale_product(tmp_path: Path) -> None:
    model, _ = _pruned(FAMILIES["beit"], metric="l2", ratio=0.5)
    export_onnx(model, tmp_path / "model.onnx")
    graph = onnx.load(str(tmp_path / "model.onnx"))
    scope_ops = [(n.name, n.op_type) for n in graph.graph.node if "/blocks." in n.name]
    assert not [name for name, op in scope_ops if op == "Mul" and "/attn/" not in name and "/mlp/" not in name]
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad(), OrtRunner(tmp_path / "model.onnx") as runner:
        assert np.abs(runner.infer(x) - model(torch.from_numpy(x)).numpy()).max() <= 1e-4
    assert all(getattr(block, "gamma_1", None) is not None for block in model.blocks)
