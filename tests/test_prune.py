import copy
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from edgeprune.config import PruneConfig
from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import export_onnx
from edgeprune.export.runners import OrtRunner
from edgeprune.models.artifact import load_model, save_model
from edgeprune.models.attention import attention_modules, unfused_attention
from edgeprune.models.loading import create_model
from edgeprune.models.registry import ModelSpec, resolve_model
from edgeprune.prune import pruner
from edgeprune.prune.adapters import adapter_for
from edgeprune.prune.counting import count_macs, count_params
from edgeprune.prune.importance import METRICS, build_importance, fisher_diagonal
from edgeprune.prune.pruner import prune_model
from edgeprune.prune.selection import Plan, PrunableGroup, removal_sequence

_SMALL = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 4}
FAMILIES = {
    "vit": ModelSpec("vit", "vit_tiny_patch16_224", _SMALL),
    "vit-reg-avg": ModelSpec(
        "vit-reg-avg", "vit_tiny_patch16_224", {**_SMALL, "reg_tokens": 2, "global_pool": "avg", "class_token": False}
    ),
    "deit": ModelSpec("deit", "deit_tiny_patch16_224", _SMALL),
    "deit-distilled": ModelSpec("deit-distilled", "deit_tiny_distilled_patch16_224", _SMALL),
    "deit3": ModelSpec("deit3", "deit3_small_patch16_224", _SMALL),
    "beit": ModelSpec("beit", "beit_base_patch16_224", _SMALL),
    "beitv2": ModelSpec("beitv2", "beitv2_base_patch16_224", _SMALL),
}
BATCHES = [(torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(6) % 7)]


def _model(spec: ModelSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(spec, 7, random_init=True)
    with torch.no_grad():  # break the symmetric inits (zero biases, constant layer scale) that tie scores
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def _pruned(spec: ModelSpec, **config: object) -> tuple[torch.nn.Module, dict]:
    model = _model(spec)
    report = prune_model(model, spec.timm_name, PruneConfig(**config), BATCHES)
    return model.eval(), report


def _assert_consistent(model: torch.nn.Module, size: int = 32) -> None:
    for attn in attention_modules(model).values():
        assert attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
        assert attn.proj.in_features == attn.num_heads * attn.head_dim
        assert attn.scale == pytest.approx(attn.head_dim**-0.5)  # the original temperature is folded into q
        if getattr(attn, "relative_position_bias_table", None) is not None:
            assert attn.relative_position_bias_table.shape[1] == attn.num_heads
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fused = model(x)
        with unfused_attention(model):
            unfused = model(x)
    assert fused.shape == (2, 7) and torch.isfinite(fused).all()
    assert (fused - unfused).abs().max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_prunes_with_heads_and_exports(family: str, tmp_path: Path) -> None:
    spec = FAMILIES[family]
    # At 0.8 head dims alone cannot meet the budget (a head keeps at least 4 of its 12 dims): whole heads go too.
    model, report = _pruned(spec, metric="hessian", ratio=0.8, prune_heads=True, round_to=4)
    _assert_consistent(model)
    assert report.macs.after < report.macs.before and report.macs.after == count_macs(model)
    for block in report.blocks:
        assert block.after.heads >= 1
        assert all(getattr(block.after, k) % 4 == 0 for k in ("embed_dim", "head_dim", "mlp_hidden")), block
    assert sum(b.after.heads for b in report.blocks) < sum(b.before.heads for b in report.blocks)
    assert abs(report.units.removed_fraction - 0.8) <= 0.02
    save_model(model, tmp_path / "m", spec.timm_name, dict(spec.create_kwargs, num_classes=7))
    loaded = load_model(tmp_path / "m")
    export_onnx(loaded, tmp_path / "m.onnx")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
        assert np.array_equal(loaded(x).numpy(), expected)
    np.testing.assert_allclose(OrtRunner(tmp_path / "m.onnx").run(x.numpy()), expected, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_larger_ratio_gives_a_smaller_model(family: str) -> None:
    macs = [_pruned(FAMILIES[family], metric="l2", ratio=r)[1].macs.after for r in (0.5, 0.75, 0.9)]
    assert macs[0] > macs[1] > macs[2]
    # This 48-wide model reaches 0.95 only below the floors (8 embedding channels, 4 dims a head): ask for it.
    model, report = _pruned(FAMILIES[family], metric="l2", ratio=0.95, allow_narrow=True)
    assert report.achieved.macs_kept < 0.05
    _assert_consistent(model)


def test_beit_attention_and_embedding_really_shrink() -> None:
    model, _ = _pruned(FAMILIES["beit"], metric="taylor", ratio=0.5, prune_heads=True, normalization="mean")
    block = model.blocks[0]
    assert block.attn.qkv.in_features < 48 and block.attn.qkv.out_features < 3 * 48
    assert block.attn.proj.out_features < 48 and block.mlp.fc1.out_features < 4 * 48
    assert block.gamma_1.shape[0] == block.attn.proj.out_features
    assert block.attn.q_bias.shape[0] == block.attn.v_bias.shape[0] == block.attn.k_bias.shape[0]
    assert float(block.attn.k_bias.abs().sum()) == 0.0
    assert block.attn.qkv.bias is None and "blocks.0.attn.q_bias" in model.state_dict()  # timm's layout again


@pytest.mark.parametrize(("target", "measure"), [("target_macs", "macs"), ("target_params", "params")])
def test_target_fraction_is_reached_within_3_percent(target: str, measure: str) -> None:
    _, report = _pruned(FAMILIES["deit"], metric="l1", **{target: 0.4})
    kept = getattr(report, measure).kept
    assert abs(kept / 0.4 - 1) <= 0.03, kept


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_on_the_micro_models(metric: str) -> None:
    for alias in ("vit-micro", "deit-micro"):
        spec = resolve_model(alias)
        model = _model(spec)
        batches = [(torch.randn(4, 3, 64, 64), torch.arange(4))]
        config = PruneConfig(metric=metric, ratio=0.5, normalization="mean")  # every group shrinks
        report = prune_model(model, spec.timm_name, config, batches)
        _assert_consistent(model, 64)
        assert report.macs.after < 0.6 * report.macs.before
        assert report.params.after == count_params(model)


def test_macs_count_attention_products() -> None:
    spec = FAMILIES["vit"]
    model = _model(spec)
    tokens, dim, depth, patch = (32 // 8) ** 2 + 1, 48, 2, 8
    linear = tokens * depth * (dim * 3 * dim + dim * dim + 2 * dim * 4 * dim) + (tokens - 1) * dim * 3 * patch**2
    attention = depth * 2 * tokens * tokens * dim  # q @ k^T and attn @ v
    assert count_macs(model) == linear + attention + dim * 7


def test_hessian_matches_a_per_sample_loop() -> None:
    spec = ModelSpec("two-block", "vit_tiny_patch16_224", {**_SMALL, "embed_dim": 24, "num_heads": 3})
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
    resnet = timm.create_model("resnet10t", num_classes=7)
    with pytest.raises(EdgepruneError, match="not a supported family.*BEiT"):
        adapter_for(resnet, "resnet10t")
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(EdgepruneError, match="between 0 and 1"):
            PruneConfig(ratio=bad).validate()
    with pytest.raises(EdgepruneError, match="unknown metric"):
        PruneConfig(metric="magnitude").validate()
    with pytest.raises(EdgepruneError, match="not both"):
        PruneConfig(target_macs=0.5, target_params=0.5).validate()
    with pytest.raises(EdgepruneError, match="fraction of MACs to keep"):
        PruneConfig(target_macs=1.2).validate()


def _groups(model: torch.nn.Module, spec: ModelSpec) -> tuple:
    adapter = adapter_for(model, spec.timm_name)
    adapter.prepare(model)
    graph = pruner.build_graph(model, adapter)
    return adapter, pruner.find_groups(model, graph, adapter, build_importance("l2", model, BATCHES))


@torch.no_grad()
def _mask_original(model: torch.nn.Module, dims: list[int], head: int, mlp_units: list[int]) -> None:
    """Zero the q/k/v rows of `dims` in every head and of the whole `head`, and the MLP's `mlp_units`."""
    for attn in attention_modules(model).values():
        heads, head_dim = attn.num_heads, attn.qkv.out_features // (3 * attn.num_heads)
        rows = {h * head_dim + d for h in range(heads) for d in dims} | set(
            range(head * head_dim, (head + 1) * head_dim)
        )
        rows = sorted(rows)
        for part in range(3):
            index = [part * heads * head_dim + r for r in rows]
            attn.qkv.weight[index] = 0
            if attn.qkv.bias is not None:
                attn.qkv.bias[index] = 0
        for name in ("q_bias", "v_bias"):
            if getattr(attn, name, None) is not None:
                getattr(attn, name)[rows] = 0
    for block in model.blocks:
        block.mlp.fc1.weight[mlp_units] = 0
        block.mlp.fc1.bias[mlp_units] = 0  # GELU(0) = 0: the unit contributes nothing


@pytest.mark.parametrize("family", ["vit", "deit", "deit-distilled", "deit3", "beit", "beitv2"])
def test_pruned_model_computes_the_masked_original(family: str) -> None:
    spec = FAMILIES[family]
    original = _model(spec)
    model = copy.deepcopy(original)
    adapter, groups = _groups(model, spec)
    plan = Plan()
    for group in groups:
        if group.kind == "attention":
            plan.units_removed[group.root] = [0, 5]
            plan.heads_removed[group.root] = [1]
        elif group.kind == "mlp":
            plan.units_removed[group.root] = list(range(0, 60, 3))
    pruner.apply_plan(model, adapter, groups, plan)
    assert all(a.head_dim == 10 and a.num_heads == 3 for a in attention_modules(model).values())
    _mask_original(original, [0, 5], 1, list(range(0, 60, 3)))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = original.eval()(x)
        assert (model.eval()(x) - expected).abs().max() <= 1e-5
        with unfused_attention(model):
            assert (model(x) - expected).abs().max() <= 1e-5


_WIDE = ModelSpec("wide", "vit_tiny_patch16_224", {**_SMALL, "embed_dim": 64, "num_heads": 2})


@pytest.mark.parametrize("round_to", [8, 16])
@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_round_to_keeps_multiples_and_the_ratio(round_to: int, ratio: float) -> None:
    model, report = _pruned(_WIDE, metric="l2", ratio=ratio, round_to=round_to)
    assert abs(report.units.removed_fraction - ratio) <= 0.02, report.units
    for block in report.blocks:
        for key in ("embed_dim", "head_dim", "mlp_hidden"):
            width = getattr(block.after, key)
            assert width % round_to == 0 or width == getattr(block.before, key), (key, width)
    _assert_consistent(model)


def test_heads_and_head_dims_share_one_budget() -> None:
    for ratio in (0.3, 0.5, 0.7):
        _, with_heads = _pruned(FAMILIES["vit"], metric="hessian", ratio=ratio, prune_heads=True)
        _, without = _pruned(FAMILIES["vit"], metric="hessian", ratio=ratio)
        assert abs(with_heads.units.removed_fraction - ratio) <= 0.02
        assert abs(without.units.removed_fraction - ratio) <= 0.02


def test_floors_refuse_a_degenerate_model_and_say_what_is_reachable() -> None:
    with pytest.raises(EdgepruneError, match=r"at most 0\.\d+ of the units can go, keeping 0\.\d+ of the MACs"):
        _pruned(FAMILIES["vit"], metric="l2", ratio=0.99)
    with pytest.raises(EdgepruneError, match=r"leave at least 0\.\d+"):
        _pruned(FAMILIES["vit"], metric="l2", target_macs=0.001)
    model, report = _pruned(FAMILIES["vit"], metric="l2", ratio=0.9)
    assert all(b.after.embed_dim >= 8 and b.after.head_dim >= 4 for b in report.blocks)
    with torch.no_grad():
        assert model(torch.randn(8, 3, 32, 32)).std(0).max() > 0  # the output still depends on the input


@pytest.mark.parametrize("normalization", ["auto", "none", "mean", "max", "cost"])
def test_every_normalization_prunes_to_the_ratio(normalization: str) -> None:
    model, report = _pruned(FAMILIES["deit"], metric="hessian", ratio=0.5, normalization=normalization)
    assert abs(report.units.removed_fraction - 0.5) <= 0.02
    _assert_consistent(model)


def test_the_cost_exponent_is_reported_with_the_cost_normalization() -> None:
    _, report = _pruned(FAMILIES["deit"], metric="hessian", target_macs=0.6, normalization="cost", cost_exponent=0.75)
    assert report.normalization == "cost" and report.cost_exponent == 0.75
    assert abs(report.achieved.macs_kept - 0.6) <= 0.01
    assert _pruned(FAMILIES["deit"], metric="hessian", normalization="none")[1].cost_exponent is None


@pytest.mark.parametrize(("metric", "normalization", "exponent"), [("hessian", "cost", 0.75), ("l2", "mean", None)])
def test_auto_normalization_is_cost_at_three_quarters_for_gradient_metrics(
    metric: str, normalization: str, exponent: float | None
) -> None:
    _, report = _pruned(FAMILIES["deit"], metric=metric, ratio=0.4)
    assert (report.normalization, report.cost_exponent) == (normalization, exponent)


def test_balance_cap_limits_what_one_group_loses() -> None:
    _, report = _pruned(FAMILIES["vit"], metric="l2", ratio=0.4, max_share=0.5)
    for block in report.blocks:
        for key in ("embed_dim", "mlp_hidden"):
            assert getattr(block.after, key) >= getattr(block.before, key) / 2


def test_compensation_restores_constant_units_exactly() -> None:
    """MLP units with a constant output (zero input weights) are removed losslessly once their mean is folded."""
    spec = FAMILIES["deit"]
    original = _model(spec)
    units = list(range(0, 40, 2))
    with torch.no_grad():
        for block in original.blocks:
            block.mlp.fc1.weight[units] = 0
    without = _error_without_mlp_units(original, spec, units, batches=())
    assert _error_without_mlp_units(original, spec, units, BATCHES, "mean") <= 1e-5 < without
    assert _error_without_mlp_units(original, spec, units, BATCHES, "fit") <= 1e-5


def test_fit_compensation_stands_in_for_units_that_copy_kept_ones() -> None:
    """MLP units that duplicate kept units: the least-squares fit hands their output to the copies, the mean cannot."""
    spec = FAMILIES["deit"]
    original = _model(spec)
    removed = list(range(0, 40, 2))
    with torch.no_grad():
        for block in original.blocks:
            block.mlp.fc1.weight[removed] = block.mlp.fc1.weight[[u + 1 for u in removed]]
            block.mlp.fc1.bias[removed] = block.mlp.fc1.bias[[u + 1 for u in removed]]
    fit = _error_without_mlp_units(original, spec, removed, BATCHES, "fit")
    assert fit < 0.05 * _error_without_mlp_units(original, spec, removed, BATCHES, "mean")


def _error_without_mlp_units(
    original: torch.nn.Module, spec: ModelSpec, units: list[int], batches: list, compensation: str = "fit"
) -> float:
    """Max |output change| when every MLP loses `units`, compensated on `batches` (none: not compensated)."""
    model = copy.deepcopy(original)
    adapter, groups = _groups(model, spec)
    plan = Plan(units_removed={g.root: units for g in groups if g.kind == "mlp"})
    pruner.apply_plan(model, adapter, groups, plan, batches, compensation)
    with torch.no_grad():
        return float((model.eval()(BATCHES[0][0]) - original(BATCHES[0][0])).abs().max())


@pytest.mark.parametrize("family", ["vit", "beit"])
def test_whole_heads_keeps_every_head_dim(family: str) -> None:
    model, report = _pruned(FAMILIES[family], metric="l2", ratio=0.5, whole_heads=True)
    assert abs(report.units.removed_fraction - 0.5) <= 0.02
    assert report.whole_heads and report.prune_heads
    assert all(b.after.head_dim == b.before.head_dim for b in report.blocks)
    assert any(b.after.heads < b.before.heads for b in report.blocks)
    assert all(b.after.heads >= 1 for b in report.blocks)
    _assert_consistent(model)


def _synthetic_group(root: str, importance: float, unit_macs: float) -> PrunableGroup:
    return PrunableGroup(root, "mlp", torch.full((4,), importance), unit_macs)


@pytest.mark.parametrize(
    ("normalization", "exponent", "first"), [("none", 1.0, "cheap"), ("cost", 0.5, "cheap"), ("cost", 1.0, "costly")]
)
def test_cost_normalization_weighs_importance_against_macs(normalization: str, exponent: float, first: str) -> None:
    """Per unit, `cheap` scores 1 at 1 MAC and `costly` 3 at 4 MACs: 1 < 3, 1 / 1 < 3 / 4 ** 0.5, 1 > 3 / 4."""
    groups = [_synthetic_group("cheap", 1.0, 1.0), _synthetic_group("costly", 3.0, 4.0)]
    sequence = removal_sequence(groups, normalization=normalization, cost_exponent=exponent)
    assert groups[sequence[0].group].root == first
    assert len(sequence) == 6  # each group down to its floor of one unit, one unit a move
