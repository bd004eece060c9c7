from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from edgeprune.train import TrainConfig, fine_tune


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_fine_tune_learns_and_checkpoints(tmp_path: Path) -> None:
    model = _model()
    history = fine_tune(model, _loader(), _loader(), TrainConfig(epochs=10, lr=3e-2), tmp_path / "ck.pt")
    assert len(history) == 10 and history[-1]["train_loss"] < history[0]["train_loss"]
    # The recorded accuracy is the trained model's, recomputed here, and well above always answering the
    # majority class (23 of the 32 labels are 0: 0.72).
    x, y = (torch.cat(t) for t in zip(*_loader(), strict=True))
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).sum().item()
    majority = max((y == 0).float().mean().item(), (y == 1).float().mean().item())
    assert history[-1]["val_accuracy"] == correct / len(y) >= 0.9 > majority, (history[-1], majority)
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["epoch"] == 10


def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    interrupted = _model()
    first = fine_tune(interrupted, _loader(), None, TrainConfig(epochs=2, lr=1e-2), checkpoint)
    # The same stage asked for 3 epochs again: it continues at epoch 3 instead of starting over.
    resumed = _model()
    history = fine_tune(resumed, _loader(), None, TrainConfig(epochs=3, lr=1e-2), checkpoint, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first


def test_distillation_loss_mixes_labels_and_teacher() -> None:
    from edgeprune.train import training_loss

    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    plain = TrainConfig(epochs=1, label_smoothing=0.0)
    assert torch.allclose(training_loss(logits, labels, plain, logits * 3), training_loss(logits, labels, plain))
    half = TrainConfig(epochs=1, label_smoothing=0.0, distill_weight=0.5, distill_temperature=2.0)
    same = training_loss(logits, labels, half, logits)  # KL to itself is 0: half the label loss remains
    assert torch.allclose(same, 0.5 * training_loss(logits, labels, plain))
    assert training_loss(logits, labels, half, -logits) > same


def test_student_learns_the_teacher(tmp_path: Path) -> None:
    teacher = _model()
    fine_tune(teacher, _loader(), None, TrainConfig(epochs=6, lr=1e-2), tmp_path / "t.pt")
    student = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    config = TrainConfig(epochs=6, lr=1e-2, distill_weight=1.0, distill_temperature=1.0)
    history = fine_tune(student, _loader(), None, config, tmp_path / "s.pt", teacher=teacher)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    x = next(iter(_loader()))[0]
    with torch.no_grad():
        assert (student(x).argmax(1) == teacher(x).argmax(1)).float().mean() >= 0.75
