"""Latency tables (probes, fit, the conditions they were measured under) and pruning to a latency, on vit-micro."""

import copy
import json
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.latency import measure
from edgeprune.latency.build import table_key, unpruned_model
from edgeprune.latency.fit import BLOCK_TERMS, TERMS, fit_coefficients, model_terms, relative_errors
from edgeprune.latency.probes import probe_model
from edgeprune.latency.table import LatencyTable, load_table
from edgeprune.latency.widths import MIN_EMBED, Widths, grid, model_widths, sample_grid
from edgeprune.models.registry import resolve_model
from edgeprune.pipeline.latency import MAX_ATTEMPTS, ensure_table
from edgeprune.profiles import load_profile
from edgeprune.progress import Reporter
from edgeprune.targets import TARGETS
from tests.conftest import tiny_request
from tests.test_cli import assert_user_error, invoke

MICRO = resolve_model("vit-micro")
FULL = Widths(embed=96, heads=3, head_dim=32, mlp=384)


@pytest.fixture(autouse=True)
def _short_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "MIN_SECONDS", 0.05)  # correctness here, not timing quality
    monkeypatch.setattr(measure, "MIN_ITERATIONS", 3)


@pytest.fixture(scope="module")
def micro_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[LatencyTable, Path]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(measure, "MIN_SECONDS", 0.05)
        patch.setattr(measure, "MIN_ITERATIONS", 3)
        root = tmp_path_factory.mktemp("ws")
        return ensure_table(MICRO, load_profile("cpu-x86"), TARGETS["ort-cpu"], root, Reporter(), probes=8)


def test_grid_keeps_floors_and_starts_at_full_width() -> None:
    levels = grid(FULL)
    assert levels["embed"][0] == 96 and min(levels["embed"]) >= MIN_EMBED
    assert all(w % 8 == 0 for w in levels["embed"] + levels["mlp"])
    assert levels["heads"] == [3, 2, 1]
    points = sample_grid(FULL, 10, seed=0)
    assert points[0] == FULL and len(set(points)) == 10
    assert points == sample_grid(FULL, 10, seed=0)


@pytest.mark.parametrize("depth", [0, 2])
def test_probe_has_the_widths_asked_for(depth: int) -> None:
    widths = Widths(embed=64, heads=2, head_dim=24, mlp=256)
    model = probe_model(MICRO, depth, widths)
    assert model.patch_embed.proj.out_channels == 64
    assert model_widths(model) == [widths] * depth
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


def test_fit_recovers_a_linear_latency_with_non_negative_terms() -> None:
    rng = np.random.default_rng(0)
    truth = np.abs(rng.standard_normal(len(TERMS))) * np.array([1e-3, 0.05, 1e-6, 1e-3, 0.01, 1e-6, 1e-4, 1e-3, 0.2])
    truth[TERMS.index("mlp")] = 0.0
    rows = np.stack([model_terms(w.embed, [w, w]) for w in sample_grid(FULL, 30, seed=1)])
    latencies = rows @ truth
    fitted = fit_coefficients(rows, latencies)
    assert (fitted >= 0).all()
    assert np.abs(relative_errors(rows, latencies, fitted)).max() < 1e-3
    assert len(BLOCK_TERMS) + 2 == len(TERMS)


def test_table_measures_probes_and_predicts_monotone(micro_table) -> None:
    table, path = micro_table
    assert path.is_file() and LatencyTable.read(path).key == table.key
    key = table.key
    assert key.model == "vit_tiny_patch16_224" and key.depth == 4 and key.full == FULL.to_json()
    assert (key.target, key.batch, key.threads, key.backend) == ("ort-cpu", 1, 4, "onnxruntime")
    held_back = [p for p in table.probes if p.held_out]
    assert len(held_back) == table.error.held_out_points >= 1
    assert all(p.p50_ms > 0 for p in table.probes)
    assert all(c >= 0 for c in table.coefficients)
    full = [FULL] * 4
    assert table.predict_ms(full) == pytest.approx(table.unpruned_ms)  # scaled to the whole model measured
    narrower = [Widths(48, 3, 32, 384)] * 4
    assert table.predict_ms(narrower) <= table.predict_ms(full)
    assert table.predict_ms([Widths(96, 3, 32, 192)] * 4) <= table.predict_ms(full)


def test_a_table_measured_for_other_conditions_is_refused(micro_table, tmp_path: Path) -> None:
    table, path = micro_table
    profile = load_profile("cpu-x86")
    wanted = table_key(MICRO, unpruned_model(MICRO), profile, TARGETS["ort-cpu"])
    assert load_table(path, wanted, profile).key == table.key
    for field, value, said in [
        ("batch", 8, "batch 8 (needed: 1)"),
        ("threads", 2, "threads 2 (needed: 4)"),
        ("device", "avx512-vnni Some Xeon", "measured on avx512-vnni Some Xeon"),
        ("target", "ort-cpu-int8", "target ort-cpu-int8"),
        ("fused_attention", None, "fused as MultiHeadAttention (this version fuses it as Attention)"),  # an old table
    ]:
        data = json.loads(path.read_text())
        data["key"][field] = value
        if value is None:  # tables from before the field do not have it
            del data["key"][field]
        foreign = tmp_path / f"{field}.json"
        foreign.write_text(json.dumps(data))
        with pytest.raises(EdgepruneError, match="measured for other conditions") as caught:
            load_table(foreign, wanted, profile)
        assert said in str(caught.value) and "edgeprune latency-table" in str(caught.value)
    strict = tmp_path / "strict.toml"
    strict.write_text(load_profile("cpu-x86").source.read_text() + 'backend_version = ">=99"\n')  # in [latency]
    with pytest.raises(EdgepruneError, match="needs >=99"):
        load_table(path, wanted, load_profile(strict))


def test_profile_latency_section_is_checked(tmp_path: Path) -> None:
    base = load_profile("cpu-x86").source.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'backend_version = "newest"\n')  # the file ends in its [latency] section
    with pytest.raises(EdgepruneError, match="latency.backend_version"):
        load_profile(bad)
    assert load_profile("jetson-orin-nano").latency.round_to == 8
    coarse = tmp_path / "coarse.toml"
    coarse.write_text(base.replace("round_to = 8", "round_to = 0"))
    with pytest.raises(EdgepruneError, match="latency.round_to = 0 must be at least 1"):
        load_profile(coarse)


def test_pruning_to_a_latency_ranks_per_ms_and_meets_the_prediction(micro_table) -> None:
    from edgeprune.config import PruneConfig
    from edgeprune.prune.pruner import prune_model

    table, _ = micro_table
    torch.manual_seed(0)
    model = unpruned_model(MICRO).eval()
    goal = 0.6 * table.unpruned_ms
    per_ms = PruneConfig(metric="l2", target_latency=goal, latency_ranking="per-ms")
    report = prune_model(model, MICRO.timm_name, per_ms, [], table)
    predicted = table.predict_ms(model_widths(model))
    assert predicted == pytest.approx(goal, rel=0.1)
    assert report.requested["target_latency"] == goal
    assert report.macs.after < report.macs.before
    with pytest.raises(EdgepruneError, match=r"cannot prune to 0.01 ms: .* leave at least .* ms"):
        prune_model(
            unpruned_model(MICRO).eval(), MICRO.timm_name, PruneConfig(metric="l2", target_latency=0.01), [], table
        )

    def widths_for(config: PruneConfig, table: LatencyTable | None) -> list[Widths]:
        torch.manual_seed(0)
        pruned = unpruned_model(MICRO).eval()
        prune_model(pruned, MICRO.timm_name, config, [], table)
        return model_widths(pruned)

    by_macs = widths_for(PruneConfig(metric="l2", target_macs=0.5), None)
    assert widths_for(PruneConfig(metric="l2", target_macs=0.5), table) == by_macs  # a table ranks latency targets only
    # ranked by importance alone, a latency target takes a prefix of the same ranking as a MACs target: the same
    # model, or one a few removals longer or shorter (the two searches stop within their tolerance at their own
    # prefix, and a measured table can predict the same ms for neighbouring prefixes), never another ranking
    alone = widths_for(
        PruneConfig(metric="l2", target_latency=table.predict_ms(by_macs), latency_ranking="importance"), table
    )
    pairs = [(a, b) for x, y in zip(alone, by_macs, strict=True) for a, b in zip(astuple(x), astuple(y), strict=True)]
    assert all(a <= b for a, b in pairs) or all(a >= b for a, b in pairs)
    assert sum(abs(a - b) for a, b in pairs) <= 0.02 * sum(b for _, b in pairs)


def test_prune_to_a_speedup_records_predicted_and_measured(builtin_root: Path, tmp_path: Path) -> None:
    from edgeprune.pipeline.prune import run_prune
    from edgeprune.workspace import Workspace

    request = tiny_request(
        builtin_root, target_speedup=1.5, profile="cpu-x86", target="ort-cpu", baseline_epochs=0, epochs=0
    )
    run = run_prune(request, Workspace(tmp_path))
    outcome = run.prune_report().latency
    assert outcome is not None and outcome.target == "ort-cpu" and outcome.asked == "--target-speedup 1.5"
    assert outcome.goal_ms == pytest.approx(outcome.unpruned_ms / 1.5)
    assert 1 <= len(outcome.attempts) <= MAX_ATTEMPTS
    assert all(a.measured_ms and a.unpruned_measured_ms for a in outcome.attempts)
    assert outcome.measured_ms in [a.measured_ms for a in outcome.attempts] and outcome.speedup > 1
    assert Path(outcome.table).is_file() and Path(outcome.table).parent == tmp_path / "latency-tables"


def test_one_lucky_reading_neither_steers_the_aim_nor_wins(micro_table, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine whose timings move: the first reading of the first attempt is 20% low. Attempts are re-measured
    beside later ones, each counts as the median of its readings, and the loop stops only on a confirmed reading
    (which attempt lands depends on the micro table measured in this run)."""
    from edgeprune.config import PruneConfig
    from edgeprune.pipeline import latency as pipeline_latency
    from edgeprune.prune.pruner import prune_model

    table, path = micro_table
    profile, target = load_profile("cpu-x86"), TARGETS["ort-cpu"]
    torch.manual_seed(0)
    reference = unpruned_model(MICRO).eval()
    probe = copy.deepcopy(reference)
    prune_model(probe, MICRO.timm_name, PruneConfig(metric="l2", target_macs=0.5, round_to=8), [], table)
    goal_ms = table.predict_ms(model_widths(probe))  # a goal the ranking meets exactly: no rounding in the way
    calls: list[int] = []

    def measured(models, goal):  # the true latency is the table's; the very first reading is lucky
        calls.append(len(models))
        return [
            table.predict_ms(model_widths(m)) * (0.8 if len(calls) == 1 and i == 0 else 1.0)
            for i, m in enumerate(models)
        ]

    monkeypatch.setattr(pipeline_latency, "_measured", measured)
    goal = pipeline_latency.LatencyGoal(goal_ms, "--target-latency", None, profile, target, table, path)
    config = PruneConfig(metric="l2", latency_ranking="importance")
    _, report = pipeline_latency.prune_to_latency(reference, MICRO.timm_name, config, [], goal, Reporter())
    outcome = report.latency
    first = outcome.attempts[0]
    assert first.measured_ms == pytest.approx(0.8 * first.predicted_ms)  # what it read alone ...
    assert len(first.counted_ms) > 1 and max(calls) > 1  # ... was measured again beside a later attempt
    kept = next(a for a in outcome.attempts if a.counts_as_ms == outcome.counted_ms)
    if len(outcome.attempts) < MAX_ATTEMPTS:  # it stopped because an attempt landed on a confirmed reading
        assert abs(outcome.counted_ms / goal_ms - 1) <= pipeline_latency.TOLERANCE and len(kept.counted_ms) >= 2


def test_next_aim_interpolates_between_attempts_around_the_goal() -> None:
    from edgeprune.pipeline.latency import next_aim

    assert next_aim([(40.0, 20.0)], 30.0) == pytest.approx(60.0)  # only below: scaled
    assert next_aim([(40.0, 20.0), (80.0, 60.0)], 30.0) == pytest.approx(50.0)  # bracketed: interpolated
    assert next_aim([(40.0, 20.0), (80.0, 60.0), (60.0, 35.0)], 30.0) == pytest.approx(40 + 10 * 20 / 15)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-speedup", "0.5"], "Invalid value"),
        (
            ["--target-latency", "10", "--target-macs", "0.5"],
            "give only one of --target-macs, --target-latency, not both",
        ),
        (["--profile", "cpu-x86"], "apply to --target-latency or --target-speedup only"),
        (["--target-speedup", "2", "--steps", "2"], "prune in one step"),
        (["--target-speedup", "2", "--latency-table", "/nonexistent.json"], "does not exist"),
    ],
)
def test_prune_refuses_bad_latency_options(args: list[str], message: str, tmp_path: Path) -> None:
    assert_user_error(invoke("prune", "--workspace", tmp_path, "--model", "vit-micro", *args), message)


def test_latency_table_command(tmp_path: Path) -> None:
    result = invoke(
        "latency-table", "--model", "vit-micro", "--profile", "cpu-x86", "--target", "ort-cpu", "--probes", "8",
        "--json", "--workspace", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert Path(data["path"]).is_file() and data["key"]["target"] == "ort-cpu"
    assert "fit error" in result.stderr
    assert_user_error(invoke("latency-table", "--workspace", tmp_path), "give --model")
