"""The onnxruntime runner (see `backends.base.Runner`) and the session options every onnxruntime user shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeprune.backends.base import Runner

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


class OrtRunner(Runner):
    """onnxruntime, on the CPU execution provider unless other providers are given; active once made."""

    name = "onnxruntime"

    def __init__(
        self, path: Path, threads: int | None = None, optimization: str = "all", providers: list | None = None
    ):
        super().__init__()
        self.path, self.threads, self.optimization = path, threads, optimization
        self.providers = providers or ["CPUExecutionProvider"]
        self.activate()

    def _activate(self) -> None:
        self.session = ort.InferenceSession(
            str(self.path), session_options(self.threads, self.optimization), providers=self.providers
        )
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in declared.shape)
        self.output_name = self.session.get_outputs()[0].name

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def _close(self) -> None:
        del self.session
