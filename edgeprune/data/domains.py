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


CLASSES_FROM_ALL = "all"
_MAX_ODD_LISTED = 50


@dataclass
class DomainDataset:
    """Every readable image of a DG data set, per domain, labelled with one class list shared by all domains.

    Files that cannot be used (unreadable images, broken or looping links) are left out and listed in `odd` with
    the reason, so a few broken files in a large benchmark do not stop a run; `report()` describes it all.
    """

    root: Path
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    samples: dict[str, list[Sample]]
    skipped: list[Path] = field(default_factory=list)  # unreadable images
    odd: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, why it was left out)
    empty_domains: tuple[str, ...] = ()  # domain folders with no images in any class folder
    classes_from: str | None = None

    def fingerprint(self) -> str:
        """Hash of every image's relative path, size and label: changes when the data set does."""
        digest = hashlib.sha256()
        for domain in self.domains:
            for path, label in self.samples[domain]:
                digest.update(f"{path.relative_to(self.root)}|{path.stat().st_size}|{label}\n".encode())
        return digest.hexdigest()[:16]

    def counts(self) -> dict[str, int]:
        return {d: len(self.samples[d]) for d in self.domains}

    def class_counts(self) -> dict[str, dict[str, int]]:
        counts = {d: dict.fromkeys(self.classes, 0) for d in self.domains}
        for domain in self.domains:
            for _, label in self.samples[domain]:
                counts[domain][self.classes[label]] += 1
        return counts

    def report(self) -> dict[str, object]:
        """What run.json keeps of the data set: images per domain and class, and every file left out and why."""
        return {
            "images_per_class": self.class_counts(),
            "empty_domains": list(self.empty_domains),
            "classes_from": self.classes_from,
            "left_out": len(self.odd),
            "left_out_files": [{"path": p, "reason": r} for p, r in self.odd[:_MAX_ODD_LISTED]],
        }

    def domain_of(self, sample: Sample) -> str:
        """The domain a sample's image lies in (ROOT/<domain>/<class>/<image>)."""
        return sample[0].relative_to(self.root).parts[0]


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _unreadable_reason(path: Path) -> str | None:
    try:
        with Image.open(path) as img:
            img.verify()
        return None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image: {' '.join(str(exc).split())[:120] or type(exc).__name__}"


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (loop or dangling), else None; links are followed once."""
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except RuntimeError:
        return "symbolic link loop"
    except OSError as exc:
        return "symbolic link loop" if "loop" in str(exc).lower() else "broken symbolic link"
    return None


_Found = dict[str, dict[str, list[Path]]]  # domain -> class -> image files


def _scan(root: Path) -> tuple[_Found, list[tuple[str, str]]]:
    found: _Found = {}
    odd: list[tuple[str, str]] = []
    for domain in _subdirs(root):
        found[domain.name] = {}
        for klass in _subdirs(domain):
            files = []
            for f in sorted(klass.iterdir()):
                problem = _link_problem(f)
                if problem is not None:
                    odd.append((str(f.relative_to(root)), problem))
                elif f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
            if files:
                found[domain.name][klass.name] = files
    return found, odd


def _choose_classes(found: _Found, classes_from: str | None, root: Path) -> list[str]:
    """One class list for every domain; refused when domains disagree and --classes-from does not settle it."""
    sets = {d: set(c) for d, c in found.items() if c}
    every = sorted(set().union(*sets.values()))
    if classes_from is None or classes_from == CLASSES_FROM_ALL:
        differing = {d: sorted(set(every) - s) for d, s in sets.items() if s != set(every)}
        if differing and classes_from is None:
            lacks = "; ".join(f"{d} has no {', '.join(m)}" for d, m in differing.items())
            raise EdgepruneError(
                f"the domains of {root} have different class folders ({lacks}): fix the folder names, or give "
                "--classes-from DOMAIN (that domain's classes; other images left out) or --classes-from all"
            )
        chosen = every
    elif classes_from in sets:
        chosen = sorted(sets[classes_from])
    else:
        raise EdgepruneError(
            f"--classes-from {classes_from}: not a domain with images in {root} (domains: {', '.join(sets)}; or 'all')"
        )
    if len(chosen) < 2:
        raise EdgepruneError(f"{root} has {len(chosen)} class(es) ({', '.join(chosen)}): classifying needs two or more")
    return chosen


def discover(
    root: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    verify: bool = True,
    known_unreadable: frozenset[str] = frozenset(),
    classes_from: str | None = None,
) -> DomainDataset:
    """Every readable image under ROOT/<domain>/<class>/.

    `verify=False` skips opening each file, for a data set verified before; `known_unreadable` (paths relative
    to ROOT) are then the files that earlier verification skipped.
    """
    if not root.exists():
        raise EdgepruneError(f"data folder {root} does not exist: give --data ROOT with ROOT/<domain>/<class>/<images>")
    if not root.is_dir():
        raise EdgepruneError(f"--data {root} is a file, not a folder of domains")
    found, odd = _scan(root)
    if not any(found.values()):
        raise EdgepruneError(
            f"no images (.jpg, .png, ...) in {root}: expected ROOT/<domain>/<class>/<images>, "
            "e.g. PACS/sketch/dog/001.png"
        )
    classes = _choose_classes(found, classes_from, root)
    total = sum(len(files) for by_class in found.values() for files in by_class.values())
    samples: dict[str, list[Sample]] = {}
    skipped: list[Path] = []
    done = 0
    for domain, by_class in found.items():
        samples[domain] = []
        for name, files in by_class.items():
            for path in files:
                done += 1
                if progress is not None:
                    progress(done, total)
                if name not in classes:
                    odd.append((str(path.relative_to(root)), f"class '{name}' is not used (--classes-from)"))
                    continue
                relative = str(path.relative_to(root))
                reason = _unreadable_reason(path) if verify else None
                if reason is None and relative in known_unreadable:
                    reason = "unreadable image"
                if reason is None:
                    samples[domain].append((path, classes.index(name)))
                else:
                    skipped.append(path)
                    odd.append((relative, reason))
    empty = tuple(d for d, s in samples.items() if not s)
    samples = {d: s for d, s in samples.items() if s}
    return DomainDataset(root, tuple(samples), tuple(classes), samples, skipped, odd, empty, classes_from)


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
    if target in dataset.empty_domains:
        raise EdgepruneError(f"the held-out domain '{target}' of {dataset.root} has no images in its class folders")
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
