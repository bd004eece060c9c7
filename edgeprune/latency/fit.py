"""A latency model linear in terms that follow the work of each op, fitted with non-negative coefficients.

Per block: the q/k/v and output projections grow with embed x attention width, the attention products and
reshapes with the attention width (tokens are fixed for a table), softmax with the heads, the MLP matmuls with embed
x hidden, its activation with the hidden width, LayerNorm and residual adds with embed, plus a per-block constant
(operator launches). The fixed parts (patch embedding, positions, final norm, head) grow with embed. Non-negative
coefficients keep the prediction monotone: removing a unit never predicts a slower model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls

from edgeprune.latency.widths import Widths

BLOCK_TERMS = ("embed x attention", "attention", "heads", "embed x mlp", "mlp", "embed", "per block")
FIXED_TERMS = ("fixed: embed", "fixed")
TERMS = FIXED_TERMS + BLOCK_TERMS


def block_terms(w: Widths) -> np.ndarray:
    return np.array([w.embed * w.attention, w.attention, w.heads, w.embed * w.mlp, w.mlp, w.embed, 1.0])


def model_terms(embed: int, blocks: Sequence[Widths]) -> np.ndarray:
    per_block = sum((block_terms(b) for b in blocks), np.zeros(len(BLOCK_TERMS)))
    return np.concatenate([[float(embed), 1.0], per_block])


def fit_coefficients(rows: np.ndarray, latencies_ms: np.ndarray) -> np.ndarray:
    """Non-negative coefficients that minimise the *relative* error (each row weighted by 1 / its latency)."""
    weighted = rows / latencies_ms[:, None]
    scale = np.abs(weighted).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(weighted / scale, np.ones(len(rows)), maxiter=50 * rows.shape[1])
    return solution / scale


def relative_errors(rows: np.ndarray, latencies_ms: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    return rows @ coefficients / latencies_ms - 1.0
