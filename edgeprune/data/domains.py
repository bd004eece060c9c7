"""Domain-generalisation data sets laid out as `ROOT/<domain>/<class>/<image>` and leave-one-domain-out splits."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgeprune.errors import EdgepruneError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
Sample = tuple[Path, int]


@dataclass
class DomainDataset:
    """Every readable image of a DG data set, per domain, labelled with one class list shared by all domains.

    Unreadable image files are skipped and counted in `skipped`, so a few broken files in a large
    benchmark do not stop a run; the CLI prints how many were skipped.
    """

    root: Path
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    samples: dict[str, list[Sample]]
    skipped: list[Path] = field(default_factory=list)

    def fingerprint(self) -> str:
        """Hash of every image's relative path, size and label: changes when the data set does."""
        digest = hashlib.sha256()
        for domain in self.domains:
            for path, label in self.samples[domain]:
                digest.update(f"{path.relative_to(self.root)}|{path.stat().st_size}|{label}\n".encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {d: len(self.samples[d]) for d in self.domains}

    def domain_of(self, sample: Sample) -> str:
        """The domain a sample's image lies in (ROOT/<domain>/<class>/<image>)."""
        return sample[0].relative_to(self.root).parts[0]


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def discover(
    root: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    verify: bool = True,
    known_unreadable: frozenset[str] = frozenset(),
) -> DomainDataset:
    """Every readable image under ROOT/<domain>/<class>/.

    `verify=False` skips opening each file, for a data set verified before; `known_unreadable` (paths relative
    to ROOT) are then the files that earlier verification skipped.
    """
    if not root.exists():
        raise EdgepruneError(f"data folder {root} does not exist: give --data ROOT with ROOT/<domain>/<class>/<images>")
    if not root.is_dir():
        raise EdgepruneError(f"--data {root} is a file, not a folder of domains")
    domain_dirs = [d for d in _subdirs(root) if _subdirs(d)]
    if not domain_dirs:
        raise EdgepruneError(
            f"no domains in {root}: expected ROOT/<domain>/<class>/<images>, e.g. PACS/sketch/dog/001.png"
        )
    classes = sorted({c.name for d in domain_dirs for c in _subdirs(d)})
    files: dict[str, list[Sample]] = {}
    for d in domain_dirs:
        files[d.name] = [
            (f, classes.index(c.name))
            for c in _subdirs(d)
            for f in sorted(c.iterdir())
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        ]
    total = sum(len(v) for v in files.values())
    if total == 0:
        raise EdgepruneError(f"no images (.jpg, .png, ...) under {root}/<domain>/<class>/")
    samples: dict[str, list[Sample]] = {}
    skipped: list[Path] = []
    done = 0
    for domain, items in files.items():
        samples[domain] = []
        for path, label in items:
            readable = _readable(path) if verify else str(path.relative_to(root)) not in known_unreadable
            (samples[domain].append((path, label)) if readable else skipped.append(path))
            done += 1
            if progress is not None:
                progress(done, total)
    empty = [d for d, s in samples.items() if not s]
    if empty:
        raise EdgepruneError(f"domain(s) {', '.join(empty)} in {root} hold no readable images")
    return DomainDataset(root, tuple(samples), tuple(classes), samples, skipped)


@dataclass
class LeaveOneDomainOut:
    """Train and validate on the source domains, test on the held-out target domain."""

    target: str
    sources: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]

    def summary(self) -> dict[str, object]:
        return {
            "target_domain": self.target,
            "source_domains": list(self.sources),
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }


def leave_one_domain_out(
    dataset: DomainDataset, target: str, val_fraction: float = 0.1, seed: int = 0
) -> LeaveOneDomainOut:
    if target not in dataset.domains:
        raise EdgepruneError(
            f"unknown --target-domain '{target}': the domains of {dataset.root} are {', '.join(dataset.domains)}"
        )
    if len(dataset.domains) < 2:
        raise EdgepruneError(f"{dataset.root} has one domain only: leave-one-domain-out needs at least two")
    sources = tuple(d for d in dataset.domains if d != target)
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for domain in sources:
        items = list(dataset.samples[domain])
        rng.shuffle(items)
        n_val = int(round(len(items) * val_fraction))
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return LeaveOneDomainOut(target, sources, train, val, list(dataset.samples[target]))
