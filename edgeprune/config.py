"""Choices that the CLI offers and the library checks, declared once (and importable without torch)."""

METRICS = ("l1", "l2", "taylor", "hessian", "random")
NORMALIZATIONS = ("none", "mean", "max", "cost")
