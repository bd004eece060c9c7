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


def cpu_isa() -> str:
    """The widest vector ISA the CPU offers for inference kernels: avx512-vnni, avx512, avx2, arm64-dotprod, arm64,
    or the machine name where none of those is known."""
    machine = platform.machine().lower()
    try:
        flags = set((_cpuinfo_field("flags") or _cpuinfo_field("Features") or "").split())
    except OSError:
        flags = set()
    if machine in ("x86_64", "amd64"):
        for flag, isa in (("avx512_vnni", "avx512-vnni"), ("avx512f", "avx512"), ("avx2", "avx2")):
            if flag in flags:
                return isa
    if machine in ("aarch64", "arm64"):
        return "arm64-dotprod" if "asimddp" in flags else "arm64"
    return machine


def cpu_model() -> str:
    try:
        return _cpuinfo_field("model name") or platform.processor() or platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def _cpuinfo_field(name: str) -> str | None:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None
