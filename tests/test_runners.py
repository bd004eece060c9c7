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


def test_one_comparator_for_parity_and_agreement() -> None:
    from edgeprune.export.compare import TOLERANCES, compare_logits
    from edgeprune.train import accuracy as top1_agreement

    reference = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]], dtype=np.float32)
    same = compare_logits([(reference, reference + 1e-4)])
    assert same.samples == 2 and same.top1_agreement == 1.0 and same.failures(TOLERANCES["parity"]) == []
    flipped = compare_logits([(reference, reference[:, ::-1])])
    assert flipped.top1_agreement == 0.5 and flipped.max_abs_diff == pytest.approx(1.0)
    reasons = flipped.failures(TOLERANCES["parity"])
    assert len(reasons) == 2 and "top-1 agreement 0.5000 < 0.99" in reasons[0] and "max |diff|" in reasons[1]
    assert flipped.failures(TOLERANCES["int8"]) == ["top-1 agreement 0.5000 < 0.97"]  # logits may move in int8
    assert top1_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="compared with"):
        compare_logits([(reference, reference[:1])])
