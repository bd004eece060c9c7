"""Runners: one small interface (`run(batch) -> logits`) over every backend that can execute an exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(
    threads: int | None = None, optimization: str = "all", optimized_model_path: Path | None = None
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPT_LEVELS[optimization]
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    return options


class OrtRunner:
    """onnxruntime, on the CPU execution provider unless other providers are given."""

    def __init__(
        self, path: Path, threads: int | None = None, optimization: str = "all", providers: list | None = None
    ):
        self.session = ort.InferenceSession(
            str(path), session_options(threads, optimization), providers=providers or ["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
