"""The one comparator (Optimum's export validation, Polygraphy's comparator): logits of a candidate against a
reference, judged against one table of tolerances.

Export parity (torch vs onnxruntime) and float16 / INT8 agreement with fp32 measure with `compare_logits`; they and
the bench gate's engine / torch agreement (top-1 predictions compared with `train.accuracy`) read their thresholds
from `TOLERANCES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    min_top1_agreement: float
    max_abs_diff: float | None = None  # None: not judged (reduced precision moves logits by design)


# parity: the exported fp32 ONNX against torch; by precision: an engine against its fp32 reference.
TOLERANCES: dict[str, Tolerance] = {
    "parity": Tolerance(min_top1_agreement=0.99, max_abs_diff=1e-3),
    "fp32": Tolerance(min_top1_agreement=0.99),
    "fp16": Tolerance(min_top1_agreement=0.98),
    "int8": Tolerance(min_top1_agreement=0.97),
}


@dataclass
class Comparison:
    samples: int = 0
    top1_agreement: float = 0.0
    max_abs_diff: float = 0.0
    mean_abs_diff: float = 0.0

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What breaks `tolerance`, in words (empty when it holds)."""
        reasons = []
        if self.top1_agreement < tolerance.min_top1_agreement:
            reasons.append(f"top-1 agreement {self.top1_agreement:.4f} < {tolerance.min_top1_agreement}")
        if tolerance.max_abs_diff is not None and self.max_abs_diff > tolerance.max_abs_diff:
            reasons.append(f"max |diff| {self.max_abs_diff:.2e} > {tolerance.max_abs_diff:g}")
        return reasons

    def to_json(self) -> dict[str, float | int]:
        return {
            "samples": self.samples,
            "top1_agreement": self.top1_agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
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
    return Comparison(samples, agree / max(samples, 1), max_abs, total_abs / max(values, 1))
