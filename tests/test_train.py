import contextlib
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from edgeprune.progress import Reporter
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
    # a mixed batch: the label term weighs each image's two labels by their shares
    other = torch.tensor([1, 0])
    mine, theirs = training_loss(logits, labels, plain), training_loss(logits, other, plain)
    assert torch.allclose(training_loss(logits, labels, plain, mixed=(other, 0.0)), mine)
    assert torch.allclose(training_loss(logits, labels, plain, mixed=(other, 1.0)), theirs)
    assert torch.allclose(training_loss(logits, labels, plain, mixed=(other, 0.25)), 0.75 * mine + 0.25 * theirs)


def test_mix_batch_blends_each_image_with_one_other() -> None:
    from edgeprune.train import mix_batch

    torch.manual_seed(0)
    x, y = torch.arange(4.0).reshape(4, 1).repeat(1, 3), torch.arange(4)
    mixed, (partner, share) = mix_batch(x, y, 0.4)
    assert 0 < share < 1 and sorted(partner.tolist()) == [0, 1, 2, 3]
    assert torch.allclose(mixed, (1 - share) * x + share * x[partner])


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_student_learns_the_teacher(tmp_path: Path, mixup: float) -> None:
    teacher = _model()
    fine_tune(teacher, _loader(), None, TrainConfig(epochs=6, lr=1e-2), tmp_path / "t.pt")
    student = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    config = TrainConfig(epochs=6, lr=1e-2, distill_weight=1.0, distill_temperature=1.0, distill_mixup=mixup)
    history = fine_tune(student, _loader(), None, config, tmp_path / "s.pt", teacher=teacher)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    x = next(iter(_loader()))[0]
    with torch.no_grad():
        assert (student(x).argmax(1) == teacher(x).argmax(1)).float().mean() >= 0.75


def test_token_relations_compare_models_of_different_widths() -> None:
    from edgeprune.train import relation_loss, token_relations

    tokens = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    relations = token_relations(tokens)
    assert relations.shape == (2, 5, 5) and torch.allclose(relations.diagonal(dim1=1, dim2=2), torch.ones(2, 5))
    # channels the teacher has and the student lost (here zero) and a scale per token change no relation
    wider = torch.cat([tokens * torch.rand(2, 5, 1) + 0.0, torch.zeros(2, 5, 4)], dim=2) * 3
    assert relation_loss(tokens, wider) <= 1e-10
    assert relation_loss(tokens, torch.randn(2, 5, 8)) > 0.1


class _Blocks(torch.nn.Module):
    """A model whose last block puts out tokens, as a ViT's does: (B, N, C) -> mean token -> classes."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.blocks = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, width))
        self.head = torch.nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x.reshape(len(x), 4, 2)).mean(1))


def _relation_gap(student: torch.nn.Module, teacher: torch.nn.Module) -> float:
    from edgeprune.train import TokenRelations

    x = torch.cat([b[0] for b in _loader()])
    with torch.no_grad(), TokenRelations(student, teacher) as relations:
        student(x), teacher(x)
        return float(relations.loss())


def test_student_learns_the_teachers_token_relations(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = _Blocks(16)
    fine_tune(teacher, _loader(), None, TrainConfig(epochs=4, lr=1e-2), tmp_path / "t.pt")
    gaps = {}
    for weight in (0.0, 10.0):
        torch.manual_seed(1)
        student = _Blocks(6)
        config = TrainConfig(epochs=8, lr=1e-2, distill_weight=0.5, distill_tokens=weight)
        fine_tune(student, _loader(), None, config, tmp_path / f"s{weight}.pt", teacher=teacher)
        gaps[weight] = _relation_gap(student, teacher)
        assert not student.blocks[-1]._forward_hooks and not teacher.blocks[-1]._forward_hooks  # hooks removed
    assert gaps[10.0] < 0.5 * gaps[0.0], gaps


class _WeightsAfterEachStep(Reporter):
    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.snapshots = model, []

    @contextlib.contextmanager
    def task(self, description: str, total: int | None):
        def advance(n: int = 1, status: str | None = None) -> None:
            if status is not None:  # called once per training step, after the optimiser's
                self.snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})

        yield advance


def test_averaged_weights_are_the_mean_of_the_steps_after_the_start(tmp_path: Path) -> None:
    model = _model()
    seen = _WeightsAfterEachStep(model)
    config = TrainConfig(epochs=2, lr=1e-2, average_from=0.5)  # 8 steps: the average of steps 5 to 8
    fine_tune(model, _loader(), None, config, tmp_path / "ck.pt", reporter=seen)
    assert len(seen.snapshots) == 8
    for name, value in model.state_dict().items():
        expected = torch.stack([s[name] for s in seen.snapshots[4:]]).mean(0)
        assert torch.allclose(value, expected, atol=1e-6), name
        assert not torch.allclose(value, seen.snapshots[-1][name]), name  # not simply the last weights
    # the last weights, with their optimiser state, stay in the checkpoint; the average travels beside them
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["average"]["count"] == 4
    assert all(torch.equal(state["model"][k], v) for k, v in seen.snapshots[-1].items())


class _StopAfter(Reporter):
    """Interrupts training (as Ctrl-C would) after `steps` training steps."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    @contextlib.contextmanager
    def task(self, description: str, total: int | None):
        def advance(n: int = 1, status: str | None = None) -> None:
            if status is None:
                return  # the bar catching up on a resume, not a step
            self.left -= n
            if self.left < 0:
                raise KeyboardInterrupt

        yield advance


@pytest.mark.parametrize("average_from", [None, 0.25])
def test_a_resumed_fine_tune_ends_with_the_weights_of_an_uninterrupted_one(
    builtin_root: Path, tmp_path: Path, average_from: float | None
) -> None:
    """Real images and timm's random augmentation (workers=0): the shuffle order, the step within the epoch, the
    optimiser, the schedule, the RNG states and the weight average all come back, so the weights match to float
    precision."""
    from edgeprune.data.domains import discover
    from edgeprune.data.loaders import data_config, make_loader, train_transform
    from edgeprune.models.loading import create_model
    from edgeprune.models.registry import resolve_model

    samples = discover(builtin_root).samples["photo"]  # 42 images: 6 batches of 8, 4 of them per epoch

    def run(checkpoint: Path, reporter: Reporter | None) -> torch.nn.Module:
        torch.manual_seed(0)
        model = create_model(resolve_model("vit-micro"), 7, random_init=True)
        loader = make_loader(samples, train_transform(data_config(model)), 8, shuffle=True, workers=0, seed=3)
        config = TrainConfig(
            epochs=2, lr=1e-3, max_steps_per_epoch=4, checkpoint_every=1, seed=3, average_from=average_from
        )
        fine_tune(model, loader, None, config, checkpoint, resume=True, reporter=reporter)
        return model

    straight = run(tmp_path / "straight.pt", None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed.pt", _StopAfter(5))  # stopped in epoch 2, after its first step
    position = torch.load(tmp_path / "resumed.pt", weights_only=True)["position"]
    assert (position["epoch"], position["step"], position["seen"]) == (1, 1, 8)  # mid-epoch, not an epoch's end
    resumed = run(tmp_path / "resumed.pt", None)
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    diff = max((a - b).abs().max().item() for a, b in pairs)
    assert diff <= 1e-6
