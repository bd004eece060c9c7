"""Which units go: one global ranking over every coupled group, in one budget, with floors and a balance cap.

Units are channels: embedding (residual stream) channels, MLP hidden channels, and attention channels (one head
dim of one head). Each group offers its units in a fixed order (lowest importance first), in chunks that keep its
width a multiple of `round_to` (a group narrower than that is left whole); an attention group offers head dims
(a chunk removes that dim from every kept head) and, with `prune_heads`, whole heads, both drawn from the same
budget; with `whole_heads`, whole heads only. A lazy priority queue takes the globally cheapest move next, where
"cheap" depends on the normalisation:

- ``none``: importance per unit removed, as the metric gives it (Hessian / Taylor are in loss units);
- ``mean`` / ``max``: per-unit importance divided by the group's mean / max (torch-pruning's default is mean);
- ``cost``: importance per multiply-accumulate removed, so a unit that costs much compute may go sooner; with
  ``cost_exponent`` p < 1, per MACs ** p, between ``none`` (p = 0) and ``cost``: an attention channel costs DeiT-Tiny
  3x the MACs of an MLP channel, and full ``cost`` lets the late blocks' head dims go for it, which PACS's held-out
  sketches needed right after pruning (README, Results).

When pruning to a latency, each group also knows the latency one of its units costs (from a latency table), and
every key is divided by it: importance per millisecond saved, whatever the normalisation (``cost`` then uses the
latency instead of the MACs).

The moves form one sequence: first within the balance cap (no group loses more than `max_share` of its units),
then, only when the budget needs it, down to the hard floors. A plan is a prefix of that sequence, so a larger
ratio always removes a superset of units and never gives a larger model.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

_EPS = 1e-12


@dataclass
class PrunableGroup:
    """One coupled group, named by its root layer.

    `scores` holds the importance of each channel; for attention groups it is (heads, head_dim). `unit_macs` is
    what removing one unit saves per image, at the unpruned widths.
    """

    root: str
    kind: str  # "embedding", "mlp", "attention" or "other"
    scores: torch.Tensor
    unit_macs: float
    attention: str | None = None
    pruning_fn: Any = None  # torch-pruning's handler for the root layer
    unit_latency: float | None = None  # ms one unit costs, when pruning to a latency

    @property
    def size(self) -> int:
        return int(self.scores.numel())

    @property
    def num_heads(self) -> int:
        return int(self.scores.shape[0]) if self.attention else 1


@dataclass(frozen=True)
class Floors:
    embedding: int
    head_dim: int
    channels: int  # MLP hidden and any other group

    @classmethod
    def for_config(cls, round_to: int | None, allow_narrow: bool) -> Floors:
        step = round_to or 1
        if allow_narrow:
            return cls(step, step, step)
        return cls(_round_up(max(8, step), step), _round_up(max(4, step), step), step)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


@dataclass(frozen=True)
class Move:
    group: int
    stream: str  # "units" (channels, or head dims of attention) or "heads"
    indices: tuple[int, ...]
    units: int  # channels removed by this move


@dataclass
class Plan:
    """Per group root: the unit indices that go (channels, or head-dim positions), and which heads go."""

    units_removed: dict[str, list[int]] = field(default_factory=dict)
    heads_removed: dict[str, list[int]] = field(default_factory=dict)
    units_total: int = 0
    units_removed_count: int = 0

    @property
    def removed_fraction(self) -> float:
        return self.units_removed_count / self.units_total if self.units_total else 0.0


def _chunks(order: list[int], step: int) -> list[tuple[int, ...]]:
    """`order` cut so that what is left after each chunk is a multiple of `step` (none when shorter than step)."""
    if len(order) < step:
        return []
    first = len(order) % step or step
    cuts = [order[:first]] + [order[i : i + step] for i in range(first, len(order), step)]
    return [tuple(c) for c in cuts]


class _GroupState:
    def __init__(self, group: PrunableGroup, step: int, floors: Floors, prune_heads: bool, whole_heads: bool) -> None:
        self.group = group
        scores = group.scores.double()
        self.scores = scores if group.attention else scores.view(1, -1)
        self.kept_heads = list(range(self.scores.shape[0]))
        self.kept_units = list(range(self.scores.shape[1]))
        unit_order = torch.argsort(self.scores.sum(0), stable=True).tolist()
        self.unit_moves = [] if group.attention and whole_heads else _chunks(unit_order, step)
        self.head_moves = (
            [(h,) for h in torch.argsort(self.scores.sum(1), stable=True).tolist()]
            if group.attention and (prune_heads or whole_heads)
            else []
        )
        self.next = {"units": 0, "heads": 0}
        self.unit_floor = {"embedding": floors.embedding, "attention": floors.head_dim}.get(group.kind, floors.channels)
        self.mean = float(scores.mean()) + _EPS
        self.max = float(scores.max()) + _EPS

    @property
    def kept(self) -> int:
        return len(self.kept_heads) * len(self.kept_units)

    def candidate(self, stream: str) -> tuple[int, ...] | None:
        moves = self.unit_moves if stream == "units" else self.head_moves
        i = self.next[stream]
        return moves[i] if i < len(moves) else None

    def units_of(self, stream: str, indices: tuple[int, ...]) -> int:
        return len(self.kept_heads) * len(indices) if stream == "units" else len(self.kept_units)

    def importance(self, stream: str, indices: tuple[int, ...]) -> float:
        if stream == "units":  # columns first: a copy of heads x len(indices), not of the whole group
            return float(self.scores[:, list(indices)][self.kept_heads].sum())
        return float(self.scores[list(indices)][:, self.kept_units].sum())

    def allowed(self, stream: str, indices: tuple[int, ...], max_share: float | None) -> bool:
        if stream == "units" and len(self.kept_units) - len(indices) < self.unit_floor:
            return False
        if stream == "heads" and len(self.kept_heads) <= 1:
            return False
        if max_share is None:
            return True
        return self.group.size - (self.kept - self.units_of(stream, indices)) <= max_share * self.group.size

    def take(self, stream: str, indices: tuple[int, ...]) -> None:
        kept = self.kept_units if stream == "units" else self.kept_heads
        for i in indices:
            kept.remove(i)
        self.next[stream] += 1


def _key(
    state: _GroupState, stream: str, indices: tuple[int, ...], normalization: str, cost_exponent: float = 1.0
) -> float:
    units = state.units_of(stream, indices)
    per_unit = state.importance(stream, indices) / max(units, 1)
    latency = state.group.unit_latency
    if latency is not None:
        per_unit /= max(latency, _EPS)
    if normalization == "mean":
        return per_unit / state.mean
    if normalization == "max":
        return per_unit / state.max
    if normalization == "cost" and latency is None:
        return per_unit / max(state.group.unit_macs, _EPS) ** cost_exponent
    return per_unit


def removal_sequence(
    groups: Sequence[PrunableGroup],
    *,
    normalization: str = "mean",
    round_to: int | None = None,
    prune_heads: bool = False,
    whole_heads: bool = False,
    max_share: float | None = None,
    cost_exponent: float = 1.0,
    floors: Floors | None = None,
) -> list[Move]:
    """Every move the budget may take, cheapest first: within the balance cap, then down to the floors."""
    floors = floors or Floors.for_config(round_to, allow_narrow=False)
    states = [_GroupState(g, round_to or 1, floors, prune_heads, whole_heads) for g in groups]

    def key_of(state: _GroupState, stream: str, indices: tuple[int, ...]) -> float:
        return _key(state, stream, indices, normalization, cost_exponent)

    sequence: list[Move] = []
    counter = itertools.count()
    for cap in [max_share, None] if max_share is not None else [None]:
        heap: list[tuple[float, int, int, str]] = []
        for i, state in enumerate(states):
            for stream in ("units", "heads"):
                move = state.candidate(stream)
                if move is not None:
                    heap.append((key_of(state, stream, move), next(counter), i, stream))
        heapq.heapify(heap)
        while heap:
            key, _, i, stream = heapq.heappop(heap)
            state = states[i]
            move = state.candidate(stream)
            if move is None:
                continue
            fresh = key_of(state, stream, move)
            if fresh > key * (1 + 1e-9) + _EPS:  # the other stream of this attention group changed it
                heapq.heappush(heap, (fresh, next(counter), i, stream))
                continue
            if not state.allowed(stream, move, cap):
                continue  # this stream stops here (in this phase)
            sequence.append(Move(i, stream, move, state.units_of(stream, move)))
            state.take(stream, move)
            following = state.candidate(stream)
            if following is not None:
                heapq.heappush(heap, (key_of(state, stream, following), next(counter), i, stream))
    return sequence


def plan_from_prefix(groups: Sequence[PrunableGroup], sequence: Sequence[Move], length: int) -> Plan:
    plan = Plan(units_total=sum(g.size for g in groups))
    for move in sequence[:length]:
        root = groups[move.group].root
        target = plan.units_removed if move.stream == "units" else plan.heads_removed
        target.setdefault(root, []).extend(move.indices)
        plan.units_removed_count += move.units
    for removed in (*plan.units_removed.values(), *plan.heads_removed.values()):
        removed.sort()
    return plan


def prefix_for_ratio(sequence: Sequence[Move], units_total: int, ratio: float) -> int:
    """Length of the prefix whose units removed come closest to `ratio` of all units."""
    goal = ratio * units_total
    removed = 0
    for i, move in enumerate(sequence):
        if removed + move.units >= goal:
            return i + 1 if (removed + move.units - goal) <= (goal - removed) else i
        removed += move.units
    return len(sequence)
