"""The one interface every backend's runner keeps (Polygraphy's shape): activate, infer, close.

A runner is made inactive; `activate` loads what it runs (a session, an engine and its buffers), `infer` checks
the batch against the model's declared input (rank, channels, image size, batch range) and returns the named
output, `close` releases everything. As a context manager it activates and closes itself. The latency harness
and the accuracy harness both drive runners through `infer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError


class Runner(ABC):
    name: str = "runner"
    input_name: str = ""
    output_name: str = ""
    # The input's declared shape (batch, channels, height, width); None where the model takes any size.
    input_shape: tuple[int | None, ...] = ()

    def __init__(self) -> None:
        self.active = False

    def activate(self) -> Runner:
        if not self.active:
            self._activate()
            self.active = True
        return self

    def close(self) -> None:
        if self.active:
            self._close()
            self.active = False

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if not self.active:
            raise EdgepruneError(f"{self.name} runner is not active: call activate() or use it in a with block")
        return self._infer(self.check_input(batch))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """`infer`, activating first when needed (for one-off calls)."""
        return self.activate().infer(batch)

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = self.input_shape
        if expected and batch.ndim != len(expected):
            raise EdgepruneError(
                f"{self.name}: input '{self.input_name}' takes rank {len(expected)} {_shape(expected)}, "
                f"got shape {batch.shape}"
            )
        for axis, (want, got) in enumerate(zip(expected, batch.shape, strict=False)):
            if want is not None and want != got:
                raise EdgepruneError(
                    f"{self.name}: input '{self.input_name}' has shape {_shape(expected)}, got {batch.shape} "
                    f"(axis {axis})"
                )
        return batch

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _close(self) -> None: ...


def _shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
