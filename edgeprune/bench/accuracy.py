"""Held-out-domain predictions of an engine runner, batch by batch, over the same preprocessed images as torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import DataLoader

from edgeprune.progress import Reporter


def runner_predictions(
    run: Callable[[np.ndarray], np.ndarray],
    loader: DataLoader,
    reporter: Reporter | None = None,
    description: str = "engine accuracy",
    fixed_batch: int | None = None,
) -> np.ndarray:
    """Top-1 of every image; with `fixed_batch`, a short last batch is padded (for fixed-shape engines)."""
    preds = []
    with (reporter or Reporter()).task(description, len(loader)) as advance:
        for x, _ in loader:
            batch = x.numpy()
            if fixed_batch and len(batch) < fixed_batch:
                batch = np.concatenate([batch, np.repeat(batch[-1:], fixed_batch - len(batch), axis=0)])
            preds.append(run(batch)[: len(x)].argmax(1))
            advance(1)
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
