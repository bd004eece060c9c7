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
    history = fine_tune(model, _loader(), _loader(), TrainConfig(epochs=4, lr=1e-2), tmp_path / "ck.pt")
    assert len(history) == 4 and history[-1]["train_loss"] < history[0]["train_loss"]
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["epoch"] == 4


def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck.pt"
    interrupted = _model()
    first = fine_tune(interrupted, _loader(), None, TrainConfig(epochs=2, lr=1e-2), checkpoint)
    # The same stage asked for 3 epochs again: it continues at epoch 3 instead of starting over.
    resumed = _model()
    history = fine_tune(resumed, _loader(), None, TrainConfig(epochs=3, lr=1e-2), checkpoint, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == first
