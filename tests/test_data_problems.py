"""Data problems a careless or unlucky user brings: each is refused in one line, warned about, or decoded right."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeprune.data.domains import discover, leave_one_domain_out
from edgeprune.data.images import open_rgb
from edgeprune.errors import EdgepruneError
from edgeprune.pipeline.context import load_dataset
from tests.conftest import Notes

CLASSES = ("cat", "dog", "fox")


def _data_set(root: Path, domains=("photo", "sketch", "cartoon"), per_class: int = 2) -> Path:
    for domain in domains:
        for klass in CLASSES:
            folder = root / domain / klass
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(folder / f"{i}.png")
    return root


def test_a_domain_with_other_class_folders_is_refused_unless_classes_from_says(tmp_path: Path) -> None:
    root = _data_set(tmp_path / "d")
    (root / "sketch" / "dog").rename(root / "sketch" / "wolf")  # a renamed class folder
    with pytest.raises(
        EdgepruneError, match=r"different class folders \(cartoon has no wolf; photo has no wolf; sketch has no dog\)"
    ):
        discover(root)
    by_photo = discover(root, classes_from="photo")
    assert by_photo.classes == CLASSES and by_photo.counts()["sketch"] == 4  # sketch's wolves left out, and said
    assert any("class 'wolf' is not used" in reason for _, reason in by_photo.odd)
    assert discover(root, classes_from="all").classes == ("cat", "dog", "fox", "wolf")
    with pytest.raises(EdgepruneError, match="--classes-from clipart: not a domain"):
        discover(root, classes_from="clipart")


def test_fewer_than_two_classes_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for domain in ("photo", "sketch"):
        (root / domain / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / domain / "cat" / "0.png")
    with pytest.raises(EdgepruneError, match="1 class.*two or more"):
        discover(root)


def test_an_empty_domain_is_warned_about_and_cannot_be_held_out(tmp_path: Path) -> None:
    root = _data_set(tmp_path / "d")
    (root / "art").mkdir()  # a source domain with no class folders
    (root / "clipart" / "cat").mkdir(parents=True)  # and one whose class folder is empty
    notes = Notes()
    dataset = load_dataset(root, notes)
    assert dataset.domains == ("cartoon", "photo", "sketch") and dataset.empty_domains == ("art", "clipart")
    assert any("domain folder 'art' holds no images" in line for line in notes.lines)
    with pytest.raises(EdgepruneError, match="held-out domain 'clipart' .* has no images"):
        leave_one_domain_out(dataset, "clipart")


def test_the_report_lists_images_per_class_and_files_left_out(tmp_path: Path) -> None:
    root = _data_set(tmp_path / "d")
    (root / "photo" / "cat" / "broken.jpg").write_bytes(b"not an image")
    loop = root / "photo" / "dog" / "loop.png"
    loop.symlink_to(loop)
    (root / "photo" / "dog" / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "photo" / "fox" / "linked.png").symlink_to(root / "sketch" / "fox" / "0.png")  # followed once
    report = discover(root).report()
    assert report["images_per_class"]["photo"] == {"cat": 2, "dog": 2, "fox": 3}
    reasons = {entry["path"]: entry["reason"] for entry in report["left_out_files"]}
    assert reasons["photo/dog/loop.png"] == "symbolic link loop"
    assert reasons["photo/dog/dangling.png"] == "broken symbolic link"
    assert reasons["photo/cat/broken.jpg"].startswith("unreadable image")


def test_odd_but_valid_images_decode_right(tmp_path: Path) -> None:
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)).save(grey16)  # mid-grey in 16 bits
    assert Image.open(grey16).mode.startswith("I")
    assert np.asarray(open_rgb(grey16))[0, 0].tolist() == [128, 128, 128]  # not clipped to white

    palette = tmp_path / "palette.png"
    Image.new("RGB", (4, 4), (200, 10, 10)).convert("P", palette=Image.Palette.ADAPTIVE).save(palette)
    assert np.asarray(open_rgb(palette))[0, 0].tolist() == [200, 10, 10]

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    red = np.asarray(open_rgb(cmyk))[4, 4]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60

    grey = tmp_path / "grey.jpg"
    Image.new("L", (8, 8), 90).save(grey)
    assert open_rgb(grey).mode == "RGB" and abs(int(np.asarray(open_rgb(grey))[4, 4, 0]) - 90) <= 2

    rotated = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (16, 8), (0, 0, 0)).save(rotated, exif=exif)
    assert open_rgb(rotated).size == (8, 16)


def test_a_copied_data_set_reads_the_same(builtin_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(builtin_root, copy)
    original, copied = discover(builtin_root), discover(copy)
    assert copied.fingerprint() == original.fingerprint() and copied.report()["left_out"] == 0
