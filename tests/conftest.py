"""Shared fixtures: a small built-in data set on disk and one finished tiny run, made once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# No test may reach the network or the user's cache: set before timm / huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from edgeprune.progress import Reporter  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("EDGEPRUNE_WORKSPACE", raising=False)


@pytest.fixture(scope="session")
def builtin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeprune.data.builtin import generate_builtin

    return generate_builtin(tmp_path_factory.mktemp("data") / "builtin", images_per_class=6, size=64, seed=0)


def tiny_request(data: Path, **overrides: object):
    from edgeprune.pipeline.prune import PruneRequest

    values = dict(
        model="vit-micro",
        ratio=0.5,
        metric="l2",
        data=data,
        target_domain="sketch",
        random_init=True,
        baseline_epochs=1,
        epochs=1,
        max_steps_per_epoch=2,
        calib_batches=1,
        batch_size=16,
        lr=1e-3,
        workers=0,  # tiny data: worker processes would cost more than they save
    )
    values.update(overrides)
    return PruneRequest(**values)


def _snapshot(root: Path) -> dict[str, str]:
    from edgeprune.workspace import file_sha256

    files = (p for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock")  # a lock names its last holder
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in files}


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ViT (vit-micro's shape, fitted on source domains only) as a .safetensors checkpoint."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("checkpoint") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, builtin_root: Path, tiny_checkpoint: Path):
    """A complete prune -> export (ort-cpu) run in its own workspace, shared by the session: READ ONLY.

    It starts from the tiny ViT's checkpoint, not from random weights: a random-init model trained for two steps
    gives every held-out image the same class, and agreement or accuracy checks on a constant predictor measure
    nothing. The fine-tuning learning rate is low enough that the pruned model keeps distinct predictions.

    Tests that write into a run (bench reports, prediction caches, new engines, runs beside it, LATEST) take
    `run_copy` instead. At the end of the session the workspace must be exactly as built, file for file.
    """
    from edgeprune.pipeline.export import ExportRequest, run_export
    from edgeprune.pipeline.prune import run_prune
    from edgeprune.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    request = tiny_request(builtin_root, random_init=False, checkpoint=tiny_checkpoint, baseline_epochs=0, lr=1e-4)
    run = run_prune(request, workspace, run_name="tiny")
    run_export(workspace, ExportRequest(target="ort-cpu", parity_images=16), run.name)
    built = _snapshot(workspace.root)
    yield workspace, run
    now = _snapshot(workspace.root)
    changed = sorted(k for k in built.keys() | now.keys() if built.get(k) != now.get(k))
    assert not changed, f"tests wrote into the shared finished_run (use run_copy): {changed}"


@pytest.fixture
def run_copy(finished_run, tmp_path: Path):
    """A private copy of finished_run's workspace (same run name, same LATEST) for a test that writes into it."""
    from edgeprune.workspace import Workspace

    workspace, run = finished_run
    copy = Workspace(tmp_path / "workspace")
    shutil.copytree(workspace.root, copy.root)
    return copy, copy.get_run(run.name)


@pytest.fixture(scope="session")
def tiny(builtin_root: Path):
    """A tiny ViT with meaningful logits on every domain (see tests/tiny_vit.py)."""
    from tests.tiny_vit import tiny_vit

    return tiny_vit(builtin_root)


@pytest.fixture(scope="session")
def fp32_onnx(tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeprune.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("tiny-onnx") / "model.onnx"
    export_onnx(tiny.model, path)
    return path


class Notes(Reporter):
    """A reporter that keeps the pipeline's messages, for tests that check what it said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)
