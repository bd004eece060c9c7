"""The widths one transformer block is pruned to, and the grid a latency table is measured over."""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# Fractions of the unpruned width at which each dimension is measured.
GRID_FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.125)
MIN_EMBED, MIN_HEAD_DIM = 8, 4


@dataclass(frozen=True)
class Widths:
    embed: int
    heads: int
    head_dim: int
    mlp: int

    @property
    def attention(self) -> int:
        return self.heads * self.head_dim

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Widths:
        return cls(int(data["embed"]), int(data["heads"]), int(data["head_dim"]), int(data["mlp"]))

    @classmethod
    def from_block(cls, data: dict[str, Any]) -> Widths:
        """From a prune report's per-block widths (`pruner.block_widths`)."""
        return cls(int(data["embed_dim"]), int(data["heads"]), int(data["head_dim"]), int(data["mlp_hidden"]))


def model_widths(model: nn.Module) -> list[Widths]:
    from edgeprune.prune.pruner import block_widths

    return [Widths.from_block(b) for b in block_widths(model)]


def _levels(full: int, floor: int, step: int) -> list[int]:
    found = set()
    for fraction in GRID_FRACTIONS:
        width = round(full * fraction / step) * step if full >= step else round(full * fraction)
        found.add(min(full, max(floor, width)))
    return sorted(found, reverse=True)


def grid(full: Widths, step: int = 8) -> dict[str, list[int]]:
    """The measured levels of each dimension: fractions of the full width, multiples of `step` where it fits."""
    return {
        "embed": _levels(full.embed, MIN_EMBED, step),
        "heads": _levels(full.heads, 1, 1),
        "head_dim": _levels(full.head_dim, MIN_HEAD_DIM, min(step, 4)),
        "mlp": _levels(full.mlp, step, step),
    }


def sample_grid(full: Widths, count: int, seed: int, step: int = 8) -> list[Widths]:
    """The full width, then `count - 1` distinct other points of the grid drawn at random (seeded)."""
    levels = grid(full, step)
    points = [Widths(*combo) for combo in itertools.product(*levels.values())]
    others = [p for p in points if p != full]
    random.Random(seed).shuffle(others)
    return [full, *others[: count - 1]]
