import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from edgeprune.errors import EdgepruneError
from edgeprune.models.loading import create_model
from edgeprune.models.registry import ModelSpec, resolve_model


def test_aliases_and_timm_names() -> None:
    assert resolve_model("deit").timm_name == "deit_base_patch16_224"
    assert resolve_model("vit").timm_name == "vit_base_patch16_224"
    assert resolve_model("beit").timm_name == "beit_base_patch16_224"
    assert resolve_model("DeiT-Tiny").timm_name == "deit_tiny_patch16_224"
    assert resolve_model("vit_small_patch32_224").timm_name == "vit_small_patch32_224"


def test_unknown_model_suggests_names() -> None:
    with pytest.raises(EdgepruneError, match="unknown model 'deit-tiyn'.*deit-tiny"):
        resolve_model("deit-tiyn")


def test_offline_without_weights_says_how_to_give_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as when the hub does not answer: the cache only, no retries
    with pytest.raises(
        EdgepruneError, match="hub is unreachable and they are not cached.*--checkpoint FILE .*--random-init"
    ):
        create_model(resolve_model("deit-tiny"), 7)


def test_a_model_of_another_family_is_refused_before_torch_is_imported() -> None:
    code = (
        "import sys\n"
        "from edgeprune.cli import app\n"
        "try:\n"
        "    app(['prune', '--model', 'resnet50'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "exit 2 False", done.stdout + done.stderr
    assert "edgeprune prunes ViT, DeiT and BEiT models" in " ".join(done.stderr.split())


SMALL_DEIT = ModelSpec("deit-2-blocks", "deit_tiny_patch16_224", {"img_size": 32, "depth": 2})


def _reference(num_classes: int) -> torch.nn.Module:
    return timm.create_model("deit_tiny_patch16_224", num_classes=num_classes, img_size=32, depth=2)


def test_checkpoint_head_is_adapted_to_the_task(tmp_path: Path) -> None:
    source = _reference(1000)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    spec = SMALL_DEIT
    model = create_model(spec, 7, checkpoint=path)
    assert model.head.out_features == 7
    assert torch.equal(model.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)


def test_pth_state_dict_is_loaded_without_pickle(tmp_path: Path) -> None:
    source = _reference(7)
    path = tmp_path / "w.pth"
    torch.save({"model": source.state_dict()}, path)
    spec = SMALL_DEIT
    model = create_model(spec, 7, checkpoint=path)
    assert torch.equal(model.head.weight, source.head.weight)


def test_bad_checkpoints(tmp_path: Path) -> None:
    spec = resolve_model("vit-micro")
    with pytest.raises(EdgepruneError, match="does not exist"):
        create_model(spec, 7, checkpoint=tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_text("these are not tensors")  # a text file named .safetensors
    with pytest.raises(EdgepruneError, match=r"not a valid \.safetensors file .*Give a state dict: a \.safetensors"):
        create_model(spec, 7, checkpoint=corrupt)
    wrong = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in _reference(7).state_dict().items()}, str(wrong))
    with pytest.raises(EdgepruneError, match="does not fit vit_tiny_patch16_224"):
        create_model(spec, 7, checkpoint=wrong)
    pickled = tmp_path / "model.pth"
    torch.save(_reference(7), pickled)  # a whole pickled module: refused by weights_only loading
    with pytest.raises(
        EdgepruneError, match=r"pickled Python objects .*torch\.save\(model\.state_dict\(\), path\)"
    ) as err:
        create_model(spec, 7, checkpoint=pickled)
    assert "\x1b" not in str(err.value)  # no terminal colour codes
