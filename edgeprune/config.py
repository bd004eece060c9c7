"""Choices that the CLI offers and the library checks, declared once (and importable without torch)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.errors import EdgepruneError

METRICS = ("l1", "l2", "taylor", "hessian", "random")
NORMALIZATIONS = ("auto", "none", "mean", "max", "cost")
# standard: timm's crop, flip and colour jitter; shape: also line drawings and greyscale (`data.augment`)
AUGMENTATIONS = ("standard", "shape")
# How units are ranked when pruning to a latency: importance alone (as for a ratio; the default, measured better on
# PACS: README, Results), or importance per ms saved
LATENCY_RANKINGS = ("importance", "per-ms")
# What `--compensate` folds back for removed inputs: their mean (into the bias), or their least-squares fit on the
# kept inputs (weights and bias; `prune.compensate`)
COMPENSATIONS = ("mean", "fit")


AUTO_COST_EXPONENT = 0.75
GRADIENT_METRICS = ("hessian", "taylor")  # scores in loss units, comparable across groups


def resolve_normalization(
    normalization: str, metric: str, cost_exponent: float | None = None
) -> tuple[str, float | None]:
    """The normalisation and, for `cost`, its exponent. `auto`: for the gradient metrics, whose scores are loss
    increases, importance per MACs ** 0.75 removed (kept the most of held-out PACS domains: README, Results); the
    per-group mean for magnitudes and random, whose scores do not compare across groups."""
    if normalization == "auto":
        normalization = "cost" if metric in GRADIENT_METRICS else "mean"
        if normalization == "cost" and cost_exponent is None:
            cost_exponent = AUTO_COST_EXPONENT
    if normalization != "cost":
        return normalization, None
    return normalization, 1.0 if cost_exponent is None else cost_exponent


def resolve_legacy_auto(metric: str) -> str:
    """What `auto` meant in runs recorded before --cost-exponent: no normalisation for the gradient metrics."""
    return "none" if metric in GRADIENT_METRICS else "mean"


# Every pruning amount is a fraction strictly inside (0, 1): a --ratio of units removed, or a fraction kept.
AMOUNT_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class Amount:
    """How much to prune, decided once from the three options: a ratio of units, or a fraction of MACs or
    parameters kept (a target overrides --ratio)."""

    kind: str  # "ratio", "macs", "params", "latency" (ms) or "speedup" (over the unpruned model's latency)
    value: float

    @classmethod
    def choose(
        cls,
        ratio: float,
        target_macs: float | None = None,
        target_params: float | None = None,
        target_latency: float | None = None,
        target_speedup: float | None = None,
    ) -> Amount:
        targets = {
            "--target-macs": target_macs,
            "--target-params": target_params,
            "--target-latency": target_latency,
            "--target-speedup": target_speedup,
        }
        given = [name for name, value in targets.items() if value is not None]
        if len(given) > 1:
            raise EdgepruneError(f"give only one of {', '.join(given)}" + (", not both" if len(given) == 2 else ""))
        if target_latency is not None and not target_latency > 0:
            raise EdgepruneError(f"--target-latency is in milliseconds and must be positive (got {target_latency:g})")
        if target_speedup is not None and not target_speedup > 1:
            raise EdgepruneError(f"--target-speedup must be above 1 (got {target_speedup:g}): 2 = twice as fast")
        if target_latency is not None:
            return cls("latency", target_latency)
        if target_speedup is not None:
            return cls("speedup", target_speedup)
        low, high = AMOUNT_RANGE
        for name, value, meaning in (
            ("--ratio", ratio, "the fraction of units to remove"),
            ("--target-macs", target_macs, "the fraction of MACs to keep"),
            ("--target-params", target_params, "the fraction of parameters to keep"),
        ):
            if value is not None and not low < value < high:
                raise EdgepruneError(f"{name} is {meaning}, strictly between {low:g} and {high:g} (got {value:g})")
        if target_macs is not None:
            return cls("macs", target_macs)
        if target_params is not None:
            return cls("params", target_params)
        return cls("ratio", ratio)

    @property
    def needs_latency_table(self) -> bool:
        return self.kind in ("latency", "speedup")

    def describe(self) -> str:
        if self.kind == "ratio":
            return f"ratio {self.value:g}"
        if self.kind == "latency":
            return f"to {self.value:g} ms"
        if self.kind == "speedup":
            return f"to {self.value:g}x the unpruned model's speed"
        return f"keeping {self.value:g} of the {'MACs' if self.kind == 'macs' else 'parameters'}"

    def tag(self) -> str:
        """Short form for run names: r0.5, macs0.62, params0.4, latency12.5, speedup2."""
        return f"{'r' if self.kind == 'ratio' else self.kind}{self.value:g}"


@dataclass(frozen=True)
class PruneConfig:
    metric: str = "hessian"
    ratio: float = 0.5
    prune_heads: bool = False
    whole_heads: bool = False  # attention loses whole heads only, never head dims
    round_to: int | None = None
    target_macs: float | None = None
    target_params: float | None = None
    target_latency: float | None = None  # ms, predicted by the latency table `prune_model` is given
    latency_ranking: str = "importance"  # LATENCY_RANKINGS
    normalization: str = "auto"
    max_share: float | None = None
    cost_exponent: float | None = None  # with normalization cost: importance per MACs ** it (default 1; auto: 0.75)
    compensate: bool = False
    compensation: str = "fit"  # COMPENSATIONS
    allow_narrow: bool = False

    def validate(self) -> None:
        if self.metric not in METRICS:
            raise EdgepruneError(f"unknown metric '{self.metric}': choose one of {', '.join(METRICS)}")
        if self.normalization not in NORMALIZATIONS:
            raise EdgepruneError(
                f"unknown normalization '{self.normalization}': choose one of {', '.join(NORMALIZATIONS)}"
            )
        if self.compensation not in COMPENSATIONS:
            raise EdgepruneError(
                f"unknown compensation '{self.compensation}': choose one of {', '.join(COMPENSATIONS)}"
            )
        if self.latency_ranking not in LATENCY_RANKINGS:
            raise EdgepruneError(
                f"unknown latency ranking '{self.latency_ranking}': choose one of {', '.join(LATENCY_RANKINGS)}"
            )
        if self.round_to is not None and self.round_to < 1:
            raise EdgepruneError(f"--round-to must be a positive integer (got {self.round_to})")
        if self.cost_exponent is not None:
            if not 0.0 < self.cost_exponent <= 2.0:
                raise EdgepruneError(f"--cost-exponent must be in (0, 2] (got {self.cost_exponent:g})")
            if resolve_normalization(self.normalization, self.metric)[0] != "cost":
                raise EdgepruneError(
                    "--cost-exponent weighs the MACs of --normalization cost: give --normalization cost"
                )
        if self.max_share is not None and not 0.0 < self.max_share <= 1.0:
            raise EdgepruneError(f"--max-share is a fraction of a group, in (0, 1] (got {self.max_share})")
        self.amount()

    def amount(self) -> Amount:
        return Amount.choose(self.ratio, self.target_macs, self.target_params, self.target_latency)
