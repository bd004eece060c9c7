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
) -> np.ndarray:
    preds = []
    with (reporter or Reporter()).task(description, len(loader)) as advance:
        for x, _ in loader:
            preds.append(run(x.numpy()).argmax(1))
            advance(1)
    return np.concatenate(preds)
