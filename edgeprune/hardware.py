"""A description of the machine an engine was built or measured on, for build records and bench reports."""

from __future__ import annotations

import os
import platform
from typing import Any


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
