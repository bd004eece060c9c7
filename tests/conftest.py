"""Shared fixtures: a small built-in data set on disk and one finished tiny run, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

# No test may reach the network or the user's cache: set before timm / huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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
    )
    values.update(overrides)
    return PruneRequest(**values)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, builtin_root: Path):
    """A complete prune -> export (ort-cpu) run in its own workspace."""
    from edgeprune.pipeline.export import ExportRequest, run_export
    from edgeprune.pipeline.prune import run_prune
    from edgeprune.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("workspace"))
    run = run_prune(tiny_request(builtin_root), workspace, run_name="tiny")
    run_export(workspace, ExportRequest(target="ort-cpu", parity_images=16), run.name)
    return workspace, run


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
