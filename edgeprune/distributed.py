"""Data-parallel `edgeprune prune` under torchrun: the processes of one job and what they share.

torchrun starts N copies of the command and sets WORLD_SIZE, RANK and LOCAL_RANK. Every process trains (with
DistributedDataParallel, on its share of each batch); rank 0 alone prunes, evaluates and writes to the run
folder, and sends the others what they need (`World.on_main`). Without torchrun (or with one process) there is no
process group and every call here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from edgeprune.errors import EdgepruneError, RankFailed

T = TypeVar("T")

# How long the other processes wait for rank 0 at a collective (while it prunes, evaluates or writes a stage).
WAIT_TIMEOUT = timedelta(hours=2)
_RANK_SEED_STRIDE = 1_000_003  # rank r draws augmentations from seed + r * stride (rank 0: the single-process seed)


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank 0 of 1 when not started by torchrun."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def on_main(self, fn: Callable[[], T], *, share: bool = True) -> T:
        """`fn()` run by rank 0 alone, its result sent to every process (None there unless `share`).

        Every process waits for rank 0 here; when `fn` fails there, the others raise `RankFailed`.
        """
        return self._from_main(fn, share=share)

    def main_first(self, fn: Callable[[], T]) -> T:
        """`fn()` on rank 0, then, once it succeeded there, on the others (checks that print one error, not N)."""
        result = self._from_main(fn, share=False)
        return result if self.is_main else fn()

    def _from_main(self, fn: Callable[[], T], *, share: bool) -> Any:
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                result = fn()
            except BaseException:
                with contextlib.suppress(Exception):  # the others may be gone already
                    dist.broadcast_object_list([(False, None)], src=0)
                raise
            box = [(True, result if share else None)]
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise RankFailed("rank 0 failed")
        return result if self.is_main else value

    def all_same(self, value: Any, what: str) -> None:
        """Fail when the processes hold different `value`s (they must all train the same model)."""
        if not self.enabled:
            return
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        differ = [rank for rank, v in enumerate(values) if v != values[0]]
        if differ:
            raise EdgepruneError(f"the processes disagree on {what}: rank {differ[0]} differs from rank 0")

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the processes (float64)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def per_rank_batch(self, batch_size: int) -> int:
        """`--batch-size` is the global batch: each process takes an equal share of it."""
        if batch_size % self.world_size:
            raise EdgepruneError(
                f"--batch-size {batch_size} does not split evenly over {self.world_size} processes: "
                f"give a multiple of {self.world_size} (it is the global batch)"
            )
        return batch_size // self.world_size

    def augmentation_seed(self, seed: int) -> int:
        return seed + self.rank * _RANK_SEED_STRIDE

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the training loop drives it: in DistributedDataParallel, which averages the gradients."""
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def current() -> World:
    """The job this process belongs to (from torch.distributed's process group, if one is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _environment() -> tuple[int, int, int]:
    """WORLD_SIZE, RANK and LOCAL_RANK as torchrun sets them (1, 0, 0 without it)."""
    names = (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"))
    try:
        world_size, rank, local_rank = (int(os.environ.get(name, default)) for name, default in names)
    except ValueError:
        raise EdgepruneError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    return world_size, rank, local_rank


def _backend(local_rank: int) -> str:
    if not dist.is_available():
        raise EdgepruneError("this torch build has no torch.distributed: run edgeprune prune without torchrun")
    if torch.cuda.is_available():
        if not dist.is_nccl_available():
            raise EdgepruneError("CUDA is available but torch.distributed has no NCCL backend")
        if local_rank >= torch.cuda.device_count():
            raise EdgepruneError(
                f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        return "nccl"
    if not dist.is_gloo_available():
        raise EdgepruneError("torch.distributed has no gloo backend: data-parallel training on CPU needs it")
    return "gloo"


@contextlib.contextmanager
def session() -> Iterator[World]:
    """The process group of a torchrun job (gloo on CPU, NCCL on GPUs) for the length of a command."""
    world_size, rank, local_rank = _environment()
    if world_size <= 1:
        yield World()
        return
    dist.init_process_group(_backend(local_rank), timeout=WAIT_TIMEOUT)
    try:
        yield World(rank, world_size)
    finally:
        dist.destroy_process_group()
