from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edgeprune.errors import EdgepruneError
from edgeprune.models.artifact import attention_modules, load_model, save_model
from edgeprune.models.loading import create_model
from edgeprune.models.registry import ModelSpec, resolve_model
from edgeprune.prune.counting import count_macs, count_params
from edgeprune.prune.importance import METRICS, fisher_diagonal, unfused_attention
from edgeprune.prune.pruner import PruneConfig, prune_model

torch.manual_seed(0)
BATCHES = [(torch.randn(6, 3, 64, 64), torch.randint(0, 7, (6,))) for _ in range(2)]


def _pruned(alias: str, metric: str, **config: object) -> tuple[torch.nn.Module, dict]:
    spec = resolve_model(alias)
    torch.manual_seed(0)
    model = create_model(spec, 7, random_init=True)
    report = prune_model(model, spec.timm_name, PruneConfig(metric=metric, **config), BATCHES)
    return model, report


def _assert_attention_consistent(model: torch.nn.Module) -> None:
    for attn in attention_modules(model).values():
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
        assert attn.proj.in_features == attn.attn_dim == attn.num_heads * attn.head_dim
        assert attn.scale == pytest.approx(attn.head_dim**-0.5)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        fused = model(x)
        with unfused_attention(model):
            unfused = model(x)
    assert fused.shape == (2, 7)
    assert torch.allclose(fused, unfused, atol=1e-5)


@pytest.mark.parametrize("alias", ["vit-micro", "deit-micro"])
@pytest.mark.parametrize("metric", METRICS)
def test_prune_every_metric_at_half(alias: str, metric: str) -> None:
    model, report = _pruned(alias, metric, ratio=0.5)
    _assert_attention_consistent(model)
    assert report["macs"]["after"] < 0.6 * report["macs"]["before"]
    assert report["params"]["after"] < report["params"]["before"]
    assert report["macs"]["after"] == count_macs(model)
    assert report["params"]["after"] == count_params(model)
    widths = report["blocks"][0]["after"]
    assert widths["embed_dim"] < 96 and widths["mlp_hidden"] < 384
    assert model.head.out_features == 7


def test_whole_heads_and_round_to() -> None:
    model, report = _pruned("vit-micro", "l1", ratio=0.5, prune_heads=True, round_to=4)
    _assert_attention_consistent(model)
    heads = [b["after"]["heads"] for b in report["blocks"]]
    assert min(heads) >= 1 and sum(heads) < 3 * 4
    for block in report["blocks"]:
        assert all(block["after"][k] % 4 == 0 for k in ("embed_dim", "head_dim", "mlp_hidden")), block


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model, _ = _pruned("deit-micro", "taylor", ratio=0.5, prune_heads=True)
    spec = resolve_model("deit-micro")
    save_model(model, tmp_path, spec.timm_name, dict(spec.create_kwargs, num_classes=7))
    loaded = load_model(tmp_path)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    assert [a.num_heads for a in attention_modules(loaded).values()] == [
        a.num_heads for a in attention_modules(model).values()
    ]


def test_hessian_matches_a_per_sample_loop() -> None:
    spec = ModelSpec(
        "two-block",
        "vit_tiny_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3},
    )
    model = create_model(spec, 7, random_init=True).eval()
    batches = [(torch.randn(5, 3, 32, 32), torch.randint(0, 7, (5,))) for _ in range(2)]
    fisher = fisher_diagonal(model, batches, chunk_size=3)
    reference = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    with unfused_attention(model):
        for x, y in batches:
            for i in range(len(x)):
                model.zero_grad()
                F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
                for k, p in model.named_parameters():
                    reference[k] += p.grad.pow(2) / 10
    for k in reference:
        torch.testing.assert_close(fisher[k], reference[k], rtol=1e-4, atol=1e-12)


def test_unsupported_models_and_bad_config() -> None:
    spec = ModelSpec(
        "beit-small",
        "beit_base_patch16_224",
        {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 48, "num_heads": 3},
    )
    model = create_model(spec, 7, random_init=True)
    with pytest.raises(EdgepruneError, match="BEiT pruning is not supported yet"):
        prune_model(model, spec.timm_name, PruneConfig(), BATCHES)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(EdgepruneError, match="between 0 and 1"):
            PruneConfig(ratio=bad).validate()
    with pytest.raises(EdgepruneError, match="unknown metric"):
        PruneConfig(metric="magnitude").validate()
