"""Run a TensorRT engine behind the runner interface (needs TensorRT and a CUDA device visible to torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.backends.base import Runner
from edgeprune.errors import EdgepruneError
from edgeprune.export.onnx_export import OUTPUT_NAME
from edgeprune.export.trt_common import require_tensorrt


class TrtRunner(Runner):
    """A TensorRT engine behind the runner interface, with torch CUDA buffers; active once made."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: int = 0):
        super().__init__()
        self.engine_path, self.device_index = Path(engine_path), device
        self.activate()

    def _activate(self) -> None:
        trt = require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EdgepruneError("TrtRunner needs a CUDA device visible to torch (torch.cuda.is_available() is False)")
        self.torch, self.trt = torch, trt
        self.device = torch.device("cuda", self.device_index)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise EdgepruneError(
                f"TensorRT {trt.__version__} cannot load {self.engine_path}: engines only run on the TensorRT version "
                "and GPU they were built with; rebuild it here"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise EdgepruneError(f"{self.engine_path} has inputs {inputs}: expected one image input")
        self.input_name = inputs[0]
        self.input_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(self.input_name))
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in self.outputs else self.outputs[0]
        self.stream = torch.cuda.Stream(device=self.device)

    def _dtype(self, name: str) -> Any:
        numpy_type = self.trt.nptype(self.engine.get_tensor_dtype(name))
        return self.torch.from_numpy(np.zeros(0, dtype=numpy_type)).dtype

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to(self.device, self._dtype(self.input_name))
            if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
                raise EdgepruneError(
                    f"batch shape {tuple(x.shape)} is outside the engine's optimisation profile "
                    f"{self.engine.get_tensor_profile_shape(self.input_name, 0)}"
                )
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            outputs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self._dtype(name), device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EdgepruneError("TensorRT failed to run the engine (see the TensorRT log above)")
            self.stream.synchronize()
            return outputs[self.output_name].float().cpu().numpy()

    def _close(self) -> None:
        """Release the execution context, engine and runtime (in that order) and the CUDA stream."""
        del self.context, self.engine, self.runtime, self.stream


__all__ = ["TrtRunner"]
