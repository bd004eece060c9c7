"""Image transforms from timm's data config of the model, and PyTorch data loaders over sample lists."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from edgeprune.data.domains import Sample
from edgeprune.data.images import open_rgb
from edgeprune.prune.counting import input_size


def data_config(model: nn.Module) -> dict[str, Any]:
    """timm's preprocessing for `model`, with the input size the model was actually built for."""
    config = resolve_data_config({}, model=model)
    config["input_size"] = (3, *input_size(model))
    return config


def eval_transform(config: dict[str, Any]) -> Any:
    return create_transform(**config, is_training=False)


def train_transform(config: dict[str, Any], augment: str = "standard") -> Any:
    """timm's training transform (random resized crop, flip, colour jitter); `shape` first turns 70% of the images
    into line drawings and 30% of the rest to greyscale (`data.augment`)."""
    keys = ("input_size", "interpolation", "mean", "std")
    standard = create_transform(**{k: config[k] for k in keys}, is_training=True, scale=(0.6, 1.0), color_jitter=0.2)
    if augment == "standard":
        return standard
    if augment == "shape":
        from torchvision import transforms

        from edgeprune.data.augment import LineDrawing

        return transforms.Compose([LineDrawing(p=0.7), transforms.RandomGrayscale(0.3), standard])
    raise ValueError(f"unknown augmentation {augment!r}")


class ImageDataset(Dataset):
    def __init__(self, samples: Sequence[Sample], transform: Any):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(open_rgb(path)), label


class ResumableSampler(Sampler[int]):
    """A shuffle fixed by (seed, epoch) that can start part-way through an epoch: after a resume, the steps still to
    do see the images they would have seen."""

    def __init__(self, inner: DistributedSampler) -> None:
        self.inner = inner
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def skip_next(self, count: int) -> None:
        """The next pass starts after the first `count` indices of the epoch's order."""
        self._skip = count

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self) -> int:
        return len(self.inner)


def make_loader(
    samples: Sequence[Sample],
    transform: Any,
    batch_size: int,
    *,
    shuffle: bool,
    workers: int = 0,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """`shard=(rank, processes)`: this process's share of every epoch (DistributedSampler, padded to equal shares).
    A shuffled loader's order is fixed by seed and epoch (`sampler.set_epoch`) and can resume part-way."""
    dataset = ImageDataset(samples, transform)
    sampler = None
    rank, processes = shard or (0, 1)
    if shuffle or shard is not None:
        inner = DistributedSampler(dataset, num_replicas=processes, rank=rank, shuffle=shuffle, seed=seed)
        sampler = ResumableSampler(inner)
        seed += rank  # the workers' augmentation seeds differ between processes
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,  # the sampler shuffles
        sampler=sampler,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        drop_last=False,
    )


def calibration_samples(samples: Sequence[Sample], count: int, seed: int = 0) -> list[Sample]:
    """`count` samples drawn at random (class-mixed) from `samples`, reproducibly."""
    return random.Random(seed).sample(list(samples), min(len(samples), count))


def calibration_batches(
    samples: Sequence[Sample], transform: Any, n_batches: int, batch_size: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n_batches` class-mixed batches drawn from `samples` (source domains only: never the held-out one)."""
    return image_batches(calibration_samples(samples, n_batches * batch_size, seed), transform, batch_size)


def image_batches(picked: Sequence[Sample], transform: Any, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`picked` in order, as (images, labels) batches."""
    dataset = ImageDataset(list(picked), transform)
    batches = []
    for start in range(0, len(picked), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(picked)))]
        batches.append((torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])))
    return batches
