"""What `prune` evaluates (--no-eval, --eval-images, untrained random models) and what its baseline is (a classifier
new for the task is fine-tuned by default)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from edgeprune.models.loading import create_task_model
from edgeprune.models.registry import resolve_model
from edgeprune.pipeline.prune import run_prune
from edgeprune.workspace import Workspace
from tests.conftest import Notes, tiny_request


def _metrics(run) -> dict:
    return {stage: run.metrics(stage) for stage in ("baseline", "pruned", "finetuned")}


def test_no_eval_skips_accuracy_but_reports_the_pruning(builtin_root: Path, tmp_path: Path) -> None:
    run = run_prune(tiny_request(builtin_root, evaluate=False), Workspace(tmp_path), run_name="r")
    for metrics in _metrics(run).values():
        assert metrics.held_out_accuracy is None and metrics.source_val_accuracy is None
        assert metrics.not_evaluated == "--no-eval"
    assert run.prune_report().achieved.macs_kept < 1.0
    assert run.manifest()["status"] == "complete"


def test_an_untrained_random_model_is_not_evaluated(builtin_root: Path, tmp_path: Path) -> None:
    notes = Notes()
    request = tiny_request(builtin_root, baseline_epochs=0, epochs=1)
    metrics = _metrics(run_prune(request, Workspace(tmp_path), run_name="r", reporter=notes))
    assert "chance" in metrics["baseline"].not_evaluated and "chance" in metrics["pruned"].not_evaluated
    assert metrics["finetuned"].held_out_accuracy is not None  # trained after pruning: evaluated
    assert any(line.startswith("baseline: accuracy not evaluated") for line in notes.lines)


def test_eval_images_evaluates_a_seeded_sample_of_each_split(builtin_root: Path, tmp_path: Path) -> None:
    run = run_prune(tiny_request(builtin_root, eval_images=10, epochs=0), Workspace(tmp_path), run_name="r")
    metrics = run.metrics("baseline")
    assert metrics.evaluated_images == {"source_val": 10, "held_out": 10}
    assert round(metrics.held_out_accuracy * 10, 6) == round(metrics.held_out_accuracy * 10)  # a share of 10 images


def _checkpoint_with_another_head(tiny, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    state["head.weight"], state["head.bias"] = torch.zeros(5, state["head.weight"].shape[1]), torch.zeros(5)
    save_file(state, str(path))
    return path


def test_the_classifier_is_known_to_be_new_or_trained(tiny, tiny_checkpoint: Path, tmp_path: Path) -> None:
    spec = resolve_model("vit-micro")
    assert create_task_model(spec, 7, checkpoint=tiny_checkpoint)[1] is True
    other = _checkpoint_with_another_head(tiny, tmp_path / "five-classes.safetensors")
    assert create_task_model(spec, 7, checkpoint=other)[1] is False
    assert create_task_model(spec, 7, random_init=True)[1] is False


def test_a_new_classifier_gets_a_baseline_fine_tune_unless_told_otherwise(
    tiny, builtin_root: Path, tmp_path: Path
) -> None:
    other = _checkpoint_with_another_head(tiny, tmp_path / "five-classes.safetensors")
    base = dict(random_init=False, checkpoint=other, baseline_epochs=None, epochs=1, lr=1e-4, eval_images=16)
    notes = Notes()
    run = run_prune(tiny_request(builtin_root, **base), Workspace(tmp_path / "a"), run_name="r", reporter=notes)
    assert run.metrics("baseline").model_extra["epochs"] == 1  # as many as the pruned model gets
    assert any("classifier is new for these 7 classes" in line for line in notes.lines)
    assert any("its classifier was made for other classes" in line for line in notes.lines)  # said, not silent
    explicit = run_prune(tiny_request(builtin_root, **{**base, "baseline_epochs": 0}), Workspace(tmp_path / "b"))
    assert explicit.metrics("baseline").model_extra["epochs"] == 0  # --baseline-epochs 0 does what it says
