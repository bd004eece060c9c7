"""Choices that the CLI offers and the library checks, declared once (and importable without torch)."""

METRICS = ("l1", "l2", "taylor", "hessian", "random")
NORMALIZATIONS = ("auto", "none", "mean", "max", "cost")


def resolve_normalization(normalization: str, metric: str) -> str:
    """`auto`: raw scores for the gradient metrics, whose units (loss increase) already compare across groups;
    per-group mean for magnitudes and random, which do not (measured on PACS: see README, Results)."""
    if normalization != "auto":
        return normalization
    return "none" if metric in ("hessian", "taylor") else "mean"
