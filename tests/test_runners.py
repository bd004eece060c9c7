from pathlib import Path

import numpy as np
import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.export.runners import OrtRunner


def test_runner_checks_inputs_names_outputs_and_closes(fp32_onnx: Path, tiny) -> None:
    images = tiny.target_images[:3]
    with OrtRunner(fp32_onnx) as runner:
        assert runner.active and runner.input_shape == (None, 3, 64, 64)
        assert runner.output_name and runner.infer(images).shape == (3, 7)
        with pytest.raises(EdgepruneError, match=r"has shape \(\?, 3, 64, 64\), got \(3, 3, 32, 32\)"):
            runner.infer(np.zeros((3, 3, 32, 32), dtype=np.float32))
        with pytest.raises(EdgepruneError, match="takes rank 4"):
            runner.infer(images[0])
    assert not runner.active
    with pytest.raises(EdgepruneError, match="not active"):
        runner.infer(images)
    np.testing.assert_array_equal(runner.run(images), OrtRunner(fp32_onnx).infer(images))  # run() re-activates
