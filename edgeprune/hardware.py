"""A description of the machine an engine was built or measured on, for build records and bench reports."""

from __future__ import annotations

import os
import platform
from typing import Any


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def capped_threads(threads: int | None) -> int | None:
    """`threads`, at most the cores available (None: onnxruntime decides, which never asks for more)."""
    return None if threads is None else min(threads, available_cores())


def describe_device() -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    device: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "onnxruntime_providers": ort.get_available_providers(),
    }
    if torch.cuda.is_available():
        device["gpu"] = torch.cuda.get_device_name(0)
        device["cuda"] = torch.version.cuda
    return device
