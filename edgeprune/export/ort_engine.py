"""onnxruntime CPU engines: the ONNX graph optimised offline by onnxruntime, saved beside a build record."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edgeprune.export.runners import session_options


def optimise_for_cpu(source: Path, destination: Path) -> None:
    """Save onnxruntime's optimised graph; the 'extended' level stays portable across x86 and Arm CPUs."""
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    try:
        ort.InferenceSession(
            str(source),
            session_options(optimization="extended", optimized_model_path=tmp),
            providers=["CPUExecutionProvider"],
        )
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)


def cpu_device() -> dict[str, Any]:
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count()}
