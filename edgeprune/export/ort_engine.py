"""onnxruntime CPU engines: the ONNX graph optimised offline by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from edgeprune.export.runners import session_options
from edgeprune.workspace import atomic_path


def optimise_for_cpu(source: Path, destination: Path) -> None:
    """Save onnxruntime's optimised graph; the 'extended' level stays portable across x86 and Arm CPUs."""
    with atomic_path(destination) as tmp:
        ort.InferenceSession(
            str(source),
            session_options(optimization="extended", optimized_model_path=tmp),
            providers=["CPUExecutionProvider"],
        )
