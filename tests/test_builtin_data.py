"""Tests of the built-in, procedurally drawn PACS-shaped data set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeprune.data.builtin import (
    CLASSES,
    DOMAINS,
    MARKER,
    VERSION,
    default_builtin_root,
    ensure_builtin,
    generate_builtin,
    render_image,
)

N, SIZE = 3, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_builtin(tmp_path_factory.mktemp("gen") / "pacs", images_per_class=N, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def renders() -> dict[str, np.ndarray]:
    """domain -> (classes, images, H, W, 3) floats in [0, 1]; 8 images per class at 32 px."""
    out = {}
    for d, domain in enumerate(DOMAINS):
        out[domain] = (
            np.array(
                [
                    [np.asarray(render_image(name, domain, np.random.default_rng([0, d, c, i]), 32)) for i in range(8)]
                    for c, name in enumerate(CLASSES)
                ],
                dtype=np.float32,
            )
            / 255
        )
    return out


def _pngs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


def test_layout(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir() if p.is_dir()) == sorted(DOMAINS)
    for domain in DOMAINS:
        assert sorted(p.name for p in (dataset / domain).iterdir()) == sorted(CLASSES)
        for name in CLASSES:
            files = sorted((dataset / domain / name).iterdir())
            assert [f.name for f in files] == [f"{i:04d}.png" for i in range(N)]
            for f in files:
                with Image.open(f) as img:
                    img.load()
                    assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE))
    marker = json.loads((dataset / MARKER).read_text())
    assert marker == {"images_per_class": N, "size": SIZE, "seed": 0, "version": VERSION}


def test_no_temporary_directory_left(dataset: Path) -> None:
    assert [p.name for p in dataset.parent.iterdir()] == [dataset.name]


def test_deterministic_and_seeded(dataset: Path, tmp_path: Path) -> None:
    again = generate_builtin(tmp_path / "again", images_per_class=N, size=SIZE, seed=0)
    other = generate_builtin(tmp_path / "other", images_per_class=N, size=SIZE, seed=1)
    files = _pngs(dataset)
    assert len(files) == len(DOMAINS) * len(CLASSES) * N
    assert _pngs(again) == files and _pngs(other) == files
    assert all((dataset / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert all((dataset / f).read_bytes() != (other / f).read_bytes() for f in files)


def test_image_does_not_depend_on_generation_order(dataset: Path, tmp_path: Path) -> None:
    one = generate_builtin(tmp_path / "one", images_per_class=1, size=SIZE, seed=0)
    for f in _pngs(one):
        assert (one / f).read_bytes() == (dataset / f).read_bytes()


def test_rerun_keeps_files_and_other_args_replace(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    calls: list[tuple[int, int]] = []
    generate_builtin(root, images_per_class=1, size=16, progress=lambda done, total: calls.append((done, total)))
    total = len(DOMAINS) * len(CLASSES)
    assert calls == [(i + 1, total) for i in range(total)]

    probe = root / "photo" / "dog" / "0000.png"
    before = (probe.stat().st_mtime_ns, (root / MARKER).stat().st_mtime_ns)
    calls.clear()
    assert generate_builtin(root, images_per_class=1, size=16, progress=lambda d, t: calls.append((d, t))) == root
    assert calls == []
    assert (probe.stat().st_mtime_ns, (root / MARKER).stat().st_mtime_ns) == before

    generate_builtin(root, images_per_class=2, size=16, seed=3)
    assert json.loads((root / MARKER).read_text())["images_per_class"] == 2
    assert len(_pngs(root)) == 2 * total
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_incomplete_root_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    junk = root / "photo" / "dog" / "junk.png"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not a png")
    generate_builtin(root, images_per_class=1, size=16)
    assert not junk.exists()
    assert len(_pngs(root)) == len(DOMAINS) * len(CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_interrupted_generation_leaves_previous_state(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_builtin(tmp_path / "ds", images_per_class=1, size=16, progress=interrupt)
    assert list(tmp_path.iterdir()) == []

    root = generate_builtin(tmp_path / "ds", images_per_class=1, size=16)
    with pytest.raises(KeyboardInterrupt):
        generate_builtin(root, images_per_class=2, size=16, progress=interrupt)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
    assert json.loads((root / MARKER).read_text())["images_per_class"] == 1


def _fail_final_swap(monkeypatch: pytest.MonkeyPatch, before: Callable[[Path, Path], None] = lambda s, d: None) -> None:
    """Make the rename of the finished temporary folder onto the data set's root fail."""
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if ".tmp-" in Path(src).name:
            before(Path(src), Path(dst))
            raise OSError("simulated failure of the final rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_failed_swap_puts_previous_content_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate_builtin(tmp_path / "ds", images_per_class=1, size=16)
    _fail_final_swap(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        generate_builtin(root, images_per_class=2, size=16)
    assert json.loads((root / MARKER).read_text())["images_per_class"] == 1
    assert len(_pngs(root)) == len(DOMAINS) * len(CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_same_data_set_put_in_place_concurrently_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate_builtin(tmp_path / "ds", images_per_class=1, size=16)
    _fail_final_swap(monkeypatch, before=lambda src, dst: shutil.copytree(src, dst))  # another run won the race
    assert generate_builtin(root, images_per_class=2, size=16) == root
    assert json.loads((root / MARKER).read_text())["images_per_class"] == 2
    assert len(_pngs(root)) == 2 * len(DOMAINS) * len(CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


@pytest.mark.skipif(os.name != "posix", reason="stale-folder clean-up checks process ids on POSIX only")
def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ds.tmp-{int(dead.stdout)}"
    (stale / "photo").mkdir(parents=True)
    generate_builtin(tmp_path / "ds", images_per_class=1, size=16)
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_default_root_and_ensure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEPRUNE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_builtin_root() == tmp_path / "home" / ".cache" / "edgeprune" / "builtin-pacs-v1"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_builtin_root() == tmp_path / "xdg" / "edgeprune" / "builtin-pacs-v1"
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    assert default_builtin_root() == tmp_path / "cache" / "builtin-pacs-v1"

    root = ensure_builtin(images_per_class=1, size=16)
    assert root == tmp_path / "cache" / "builtin-pacs-v1"
    assert (root / MARKER).is_file()
    assert ensure_builtin(tmp_path / "explicit", images_per_class=1, size=16) == tmp_path / "explicit"


def test_render_image_checks_names() -> None:
    img = render_image("horse", "cartoon", np.random.default_rng(0), 40)
    assert (img.mode, img.size) == ("RGB", (40, 40))
    with pytest.raises(ValueError):
        render_image("cat", "photo", np.random.default_rng(0), 32)
    with pytest.raises(ValueError):
        render_image("dog", "clipart", np.random.default_rng(0), 32)


def test_domains_differ_in_style(renders: dict[str, np.ndarray]) -> None:
    brightness = {d: float(x.mean()) for d, x in renders.items()}
    saturation, black = {}, {}
    for d, x in renders.items():
        high, low = x.max(-1), x.min(-1)
        saturation[d] = float(((high - low) / np.maximum(high, 1e-3)).mean())
        black[d] = float((high < 0.2).mean())
    # sketches: mostly white paper, grey lines
    assert all(brightness["sketch"] > brightness[d] + 0.1 for d in DOMAINS if d != "sketch")
    assert brightness["sketch"] > 0.85
    assert saturation["sketch"] < 0.02
    assert all(saturation[d] > 0.2 for d in ("photo", "art_painting", "cartoon"))
    # paintings have the most saturated palettes; cartoons have thick black outlines, photos none
    assert saturation["art_painting"] > saturation["photo"]
    assert black["cartoon"] > 2 * black["photo"]


def _gradient_histograms(images: np.ndarray) -> np.ndarray:
    """Per-image 4x4-cell histograms of gradient orientation: a crude, style-agnostic shape descriptor."""
    gray = images.mean(-1)
    gy, gx = np.gradient(gray, axis=(-2, -1))
    magnitude, orientation = np.hypot(gx, gy), np.arctan2(gy, gx) % np.pi
    bins = np.minimum((orientation / np.pi * 6).astype(int), 5)
    n, h, w = gray.shape
    cells = np.stack([(magnitude * (bins == b)).reshape(n, 4, h // 4, 4, w // 4).sum((2, 4)) for b in range(6)], 1)
    return (cells / (cells.sum(1, keepdims=True) + 1e-3)).reshape(n, -1)


def test_classes_differ_within_each_domain(renders: dict[str, np.ndarray]) -> None:
    for domain, x in renders.items():
        class_means = x.mean(axis=1)
        gaps = [np.abs(class_means[a] - class_means[b]).mean() for a in range(7) for b in range(a + 1, 7)]
        assert min(gaps) > 0.02, domain

    # Leave-one-out nearest-class-mean on shape descriptors, within each domain: well above chance (1/7).
    accuracies = []
    for x in renders.values():
        feats = _gradient_histograms(x.reshape(-1, *x.shape[2:])).reshape(x.shape[0], x.shape[1], -1)
        sums, counts = feats.sum(1), x.shape[1]
        correct = 0
        for c in range(feats.shape[0]):
            for i in range(feats.shape[1]):
                means = sums / counts
                means[c] = (sums[c] - feats[c, i]) / (counts - 1)
                correct += int(np.argmin(((means - feats[c, i]) ** 2).sum(1)) == c)
        accuracies.append(correct / feats.shape[0] / feats.shape[1])
    assert np.mean(accuracies) > 2 / 7, accuracies
