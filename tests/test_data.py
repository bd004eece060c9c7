import shutil
from pathlib import Path

import pytest
import torch

from edgeprune.data.builtin import CLASSES, DOMAINS
from edgeprune.data.domains import discover, leave_one_domain_out
from edgeprune.data.loaders import calibration_batches, data_config, eval_transform, make_loader
from edgeprune.errors import EdgepruneError
from edgeprune.models.loading import create_model
from edgeprune.models.registry import resolve_model


def test_discovers_domains_and_classes(builtin_root: Path) -> None:
    dataset = discover(builtin_root)
    assert set(dataset.domains) == set(DOMAINS)
    assert dataset.classes == tuple(sorted(CLASSES))
    assert dataset.counts() == {d: 6 * 7 for d in dataset.domains}
    assert not dataset.skipped
    labels = {label for _, label in dataset.samples["sketch"]}
    assert labels == set(range(7))
    dog = dataset.classes.index("dog")
    assert all((path.parent.name == "dog") == (label == dog) for path, label in dataset.samples["photo"])


def test_leave_one_domain_out_split(builtin_root: Path) -> None:
    dataset = discover(builtin_root)
    split = leave_one_domain_out(dataset, "sketch", val_fraction=0.25, seed=1)
    assert split.sources == tuple(d for d in dataset.domains if d != "sketch")
    assert {p.parent.parent.name for p, _ in split.test} == {"sketch"}
    assert len(split.test) == 42
    source_files = {p for p, _ in split.train} | {p for p, _ in split.val}
    assert {p.parent.parent.name for p in source_files} == set(split.sources)
    assert not {p for p, _ in split.train} & {p for p, _ in split.val}
    assert len(source_files) == 3 * 42
    assert len(split.val) == 3 * round(42 * 0.25)
    again = leave_one_domain_out(dataset, "sketch", val_fraction=0.25, seed=1)
    assert again.val == split.val


def test_unknown_target_domain(builtin_root: Path) -> None:
    with pytest.raises(EdgepruneError, match="unknown --target-domain 'clipart'.*art_painting"):
        leave_one_domain_out(discover(builtin_root), "clipart")


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(EdgepruneError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(EdgepruneError, match="no images"):
        discover(tmp_path)
    (tmp_path / "photo" / "dog").mkdir(parents=True)
    with pytest.raises(EdgepruneError, match="no images"):
        discover(tmp_path)


def test_unreadable_images_are_skipped_and_counted(builtin_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(builtin_root, root)
    (root / "photo" / "dog" / "broken.jpg").write_bytes(b"not an image")
    (root / "sketch" / "house" / "empty.png").write_bytes(b"")
    dataset = discover(root)
    assert sorted(p.name for p in dataset.skipped) == ["broken.jpg", "empty.png"]
    assert dataset.counts()["photo"] == 42
    assert dataset.fingerprint() == discover(builtin_root).fingerprint()
    shutil.copy(root / "photo" / "dog" / "0000.png", root / "photo" / "dog" / "extra.png")
    assert discover(root).fingerprint() != dataset.fingerprint()


def test_loaders_follow_the_model_data_config(builtin_root: Path) -> None:
    model = create_model(resolve_model("vit-micro"), 7, random_init=True)
    config = data_config(model)
    assert config["input_size"] == (3, 64, 64)
    split = leave_one_domain_out(discover(builtin_root), "sketch")
    x, y = next(iter(make_loader(split.test, eval_transform(config), 8, shuffle=False)))
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32 and y.shape == (8,)
    batches = calibration_batches(split.train, eval_transform(config), n_batches=2, batch_size=5)
    assert [len(b[0]) for b in batches] == [5, 5]
