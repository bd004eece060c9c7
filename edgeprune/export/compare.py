"""The one comparator (Optimum's export validation, Polygraphy's comparator): logits of a candidate against a
reference, judged against one table of tolerances.

Export parity (torch vs onnxruntime) and float16 / INT8 agreement with fp32 measure with `compare_logits`; they and
the bench gate's engine / torch agreement (top-1 predictions compared with `train.accuracy`) read their thresholds
from `TOLERANCES`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgeprune.results import Comparison, Tolerance

__all__ = ["TOLERANCES", "Comparison", "Tolerance", "compare_logits"]


# parity: the exported fp32 ONNX against torch; by precision: an engine against its fp32 reference.
TOLERANCES: dict[str, Tolerance] = {
    "parity": Tolerance(min_top1_agreement=0.99, max_abs_diff=1e-3),
    "fp32": Tolerance(min_top1_agreement=0.99),
    "fp16": Tolerance(min_top1_agreement=0.98),
    "int8": Tolerance(min_top1_agreement=0.97),
}


def compare_logits(batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Comparison:
    """Compare (reference, candidate) logit batches of the same images."""
    samples, agree, max_abs, total_abs, values = 0, 0, 0.0, 0.0, 0
    for reference, candidate in batches:
        reference, candidate = np.asarray(reference, np.float32), np.asarray(candidate, np.float32)
        if reference.shape != candidate.shape:
            raise ValueError(f"logits of shape {candidate.shape} compared with {reference.shape}")
        diff = np.abs(reference - candidate)
        samples += len(reference)
        agree += int((reference.argmax(1) == candidate.argmax(1)).sum())
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        total_abs += float(diff.sum())
        values += diff.size
    return Comparison(
        samples=samples,
        top1_agreement=agree / max(samples, 1),
        max_abs_diff=max_abs,
        mean_abs_diff=total_abs / max(values, 1),
    )
