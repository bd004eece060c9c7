"""vit-micro's bundled weights (edgeprune/assets), the pre-training set they come from, and the class-spread checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

from edgeprune.bench.report import dominance_warning
from edgeprune.errors import EdgepruneError
from edgeprune.models import bundled
from edgeprune.models.loading import create_model
from edgeprune.models.registry import resolve_model
from edgeprune.results import BenchReport, PredictionSpread

SPEC = resolve_model("vit-micro")


def test_asset_is_small_matches_its_record_and_loads_strictly() -> None:
    path = bundled.bundled_path(SPEC.bundled_weights)
    record = bundled.bundled_record(SPEC.bundled_weights)
    assert path.stat().st_size < 8 * 2**20
    assert record["sha256"] == bundled.file_sha256(path) and record["script"] == "scripts/pretrain_micro.py"
    headless = timm.create_model(SPEC.timm_name, pretrained=False, num_classes=0, **SPEC.create_kwargs)
    headless.load_state_dict(load_file(str(path)), strict=True)  # every tensor but the classifier, no extras


def test_vit_micro_starts_from_the_bundled_weights() -> None:
    torch.manual_seed(0)
    model = create_model(SPEC, 7)
    weights = load_file(str(bundled.bundled_path(SPEC.bundled_weights)))
    assert torch.equal(model.blocks[3].mlp.fc2.weight, weights["blocks.3.mlp.fc2.weight"])
    assert model.head.out_features == 7 and "head.weight" not in weights


def test_a_tampered_asset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in bundled.ASSETS.iterdir():
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(bundled, "ASSETS", tmp_path)
    target = tmp_path / SPEC.bundled_weights
    target.write_bytes(target.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(EdgepruneError, match="do not match the sha256"):
        create_model(SPEC, 7)
    target.unlink()  # a checkout that lost the file (it was once left out by .gitignore's *.safetensors)
    with pytest.raises(EdgepruneError, match=r"vit-micro-photos.safetensors are missing: reinstall"):
        create_model(SPEC, 7)
    bundled.sidecar_path(target).unlink()
    with pytest.raises(EdgepruneError, match="or their record are missing"):
        create_model(SPEC, 7)


def test_the_asset_is_in_git() -> None:
    """Weights are ignored by .gitignore except the package's assets: a clean checkout must have them."""
    import subprocess

    repo = bundled.ASSETS.parent.parent
    if subprocess.run(["git", "-C", str(repo), "rev-parse"], capture_output=True, check=False).returncode != 0:
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "--error-unmatch", f"edgeprune/assets/{SPEC.bundled_weights}"],
        capture_output=True,
        text=True,
        check=False,
    )
    ignored = subprocess.run(
        ["git", "-C", str(repo), "check-ignore", "-q", f"edgeprune/assets/{SPEC.bundled_weights}"], check=False
    )
    assert ignored.returncode == 1, "edgeprune/assets/*.safetensors is ignored by git"
    assert listed.returncode == 0, f"edgeprune/assets/{SPEC.bundled_weights} is not tracked by git"


def test_pretraining_set_is_photographs_the_demo_never_sees(builtin_root: Path) -> None:
    """The bundled weights' pre-training set: photo-style drawings from seeds of its own, no other style."""
    import importlib.util

    script = Path(__file__).resolve().parent.parent / "scripts" / "pretrain_micro.py"
    spec = importlib.util.spec_from_file_location("pretrain_micro", script)
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    images, labels = pretrain.draw_photographs(3, seed=0)
    again, _ = pretrain.draw_photographs(3, seed=0)
    assert labels == [c for c in range(7) for _ in range(3)] and pretrain.STYLE == "photo"
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, again, strict=True))
    demo_photos = {
        (builtin_root / "photo" / c / f"{i:04d}.png").read_bytes() for c in ("dog", "elephant") for i in range(3)
    }
    from io import BytesIO

    def png(image) -> bytes:
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    assert not {png(image) for image in images[:6]} & demo_photos
    record = bundled.bundled_record(SPEC.bundled_weights)
    assert "photo" in record["pretraining_set"] and record["options"]["shape_epochs"] > 0


def test_prediction_spread_flags_a_near_constant_classifier() -> None:
    classes = ("a", "b", "c")
    spread = PredictionSpread.of([1, 1, 1, 0], classes)
    assert (spread.top_class, spread.top_share, spread.classes_predicted) == ("b", 0.75, 2) and spread.dominated
    even = PredictionSpread.of([0, 1, 2, 1], classes)
    assert even.top_share == 0.5 and not even.dominated  # more than half is needed
    report = BenchReport.model_construct(
        target="ort-cpu", domain="sketch", prediction_spread={"baseline": spread, "engine": even}
    )
    assert report.dominated() == ["baseline torch: b 75%"]
    assert "(baseline torch: b 75%)" in dominance_warning(report)
    assert dominance_warning(BenchReport.model_construct(target="ort-cpu", domain="sketch")) is None
