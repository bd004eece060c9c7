"""What every stage needs from a run: its data set and split, preprocessing, and cached predictions."""

from __future__ import annotations

import hashlib
import platform
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgeprune import __version__
from edgeprune.data.domains import DomainDataset, LeaveOneDomainOut, Sample, discover, leave_one_domain_out
from edgeprune.data.loaders import data_config, eval_transform, make_loader
from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.workspace import Run, Workspace, atomic_write_json, read_json


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import timm
    import torch
    import torch_pruning

    return {
        "edgeprune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_pruning": torch_pruning.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def resolve_data_root(data: Path | None, reporter: Reporter) -> Path:
    if data is not None:
        return data.resolve()
    from edgeprune.data.builtin import ensure_builtin

    with reporter.task("built-in data set", None) as advance:
        root = ensure_builtin(progress=lambda done, total: advance(1))
    reporter.info(f"data: built-in PACS-shaped data set at {root}")
    return root


def load_dataset(
    root: Path,
    reporter: Reporter,
    known_unreadable: list[str] | None = None,
    classes_from: str | None = None,
    describe: bool = True,
) -> DomainDataset:
    """Scan (and, the first time, verify) a data set and describe it: images per domain and class, what was left
    out and why; a run's data set is not verified again."""
    verify = known_unreadable is None
    with reporter.task(f"scan {root.name}", None) as advance:
        dataset = discover(
            root,
            lambda done, total: advance(1),
            verify=verify,
            known_unreadable=frozenset(known_unreadable or ()),
            classes_from=classes_from,
        )
    if describe:
        _describe_dataset(dataset, reporter)
    return dataset


def _describe_dataset(dataset: DomainDataset, reporter: Reporter) -> None:
    counts = dataset.class_counts()
    reporter.info(
        f"data: {len(dataset.domains)} domains x {len(dataset.classes)} classes, {sum(dataset.counts().values())} "
        f"images ({', '.join(dataset.classes)})"
    )
    for domain, per_class in counts.items():
        reporter.info(f"  {domain}: {sum(per_class.values())} ({' '.join(str(n) for n in per_class.values())})")
        missing = [c for c, n in per_class.items() if n == 0]
        if missing:
            reporter.info(f"[yellow]  warning: {domain} has no images of {', '.join(missing)}")
    for domain in dataset.empty_domains:
        reporter.info(f"[yellow]warning: domain folder '{domain}' holds no images in class folders: left out")
    if dataset.odd:
        path, reason = dataset.odd[0]
        reporter.info(f"[yellow]warning: {len(dataset.odd)} file(s) left out, e.g. {path}: {reason} (see run.json)")


@dataclass
class RunData:
    """The run's data set and leave-one-domain-out split, as recorded in its manifest."""

    dataset: DomainDataset
    split: LeaveOneDomainOut

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], reporter: Reporter, root: Path | None = None) -> RunData:
        """`root` overrides the recorded data folder (the same data set, mounted elsewhere)."""
        info = manifest["data"]
        root = root or Path(info["root"])
        if not root.is_dir():
            raise EdgepruneError(f"the run's data set {root} is not there: give its location with --data")
        dataset = load_dataset(
            root, reporter, info.get("unreadable_files", []), info.get("classes_from"), describe=False
        )
        if list(dataset.classes) != info["classes"]:
            raise EdgepruneError(
                f"the classes in {info['root']} are no longer those the run was trained on ({info['classes']})"
            )
        if dataset.fingerprint() != info["fingerprint"]:
            reporter.info(f"[yellow]warning: {root} differs from the data set the run was made with (fingerprint)")
        split = leave_one_domain_out(dataset, info["target_domain"], info["val_fraction"], info["seed"])
        return cls(dataset, split)

    def domain_samples(self, domain: str) -> list[Sample]:
        if domain not in self.dataset.domains:
            raise EdgepruneError(
                f"unknown --domain '{domain}': the domains of {self.dataset.root} are {', '.join(self.dataset.domains)}"
            )
        return self.dataset.samples[domain]


def eval_loader(model: nn.Module, samples: list[Sample], batch_size: int = 64, workers: int = 0) -> Any:
    return make_loader(samples, eval_transform(data_config(model)), batch_size, shuffle=False, workers=workers)


def samples_key(samples: list[Sample]) -> str:
    """Identifies a list of images by domain/class/file and label, wherever the data set folder is mounted."""
    digest = hashlib.sha256()
    for path, label in samples:
        digest.update(f"{'/'.join(path.parts[-3:])}|{label}\n".encode())
    return digest.hexdigest()[:16]


def cached_predictions(
    stage_dir: Path, domain: str, samples: list[Sample], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """Top-1 predictions of a stage's torch model on a domain, computed once and kept beside the model."""
    path = stage_dir / "predictions" / f"{domain}.json"
    key = samples_key(samples)
    if path.exists():
        cached = read_json(path)
        if cached.get("samples_key") == key:
            return np.asarray(cached["predictions"])
    preds = compute()
    atomic_write_json(path, {"domain": domain, "samples_key": key, "predictions": [int(p) for p in preds]})
    return preds


def sample_subset(samples: list[Sample], count: int | None, seed: int) -> list[Sample]:
    """`count` of the samples, drawn with the seed and kept in their order (all of them when count is None)."""
    if count is None or count >= len(samples):
        return samples
    keep = sorted(random.Random(seed).sample(range(len(samples)), count))
    return [samples[i] for i in keep]


def labels_of(samples: list[Sample]) -> np.ndarray:
    return np.asarray([label for _, label in samples])


def complete_run(workspace: Workspace, name: str | None, reporter: Reporter) -> Run:
    """The named run, else the latest; it must be complete. Without a name, a latest run that is incomplete (killed,
    or still being written) gives way to the latest complete one, with a note saying so."""
    run = workspace.get_run(name)
    status = run.status()
    if status == "complete":
        return run
    if name is None and (fallback := workspace.latest_complete_name()) is not None:
        reporter.info(f"[yellow]the latest run '{run.name}' is {status}: using the latest complete run '{fallback}'")
        return workspace.get_run(fallback)
    if status == "running":
        raise EdgepruneError(f"run '{run.name}' is still being written by another process: wait for it to finish")
    how = "was interrupted (killed or crashed) before it finished" if status == "interrupted" else f"is {status}"
    raise EdgepruneError(f"run '{run.name}' {how}: finish it with `edgeprune prune --run {run.name} --resume`")
