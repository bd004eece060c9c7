"""Fine-tuning on the source domains: AdamW, warm-up + cosine, label smoothing, AMP on CUDA, resumable epochs.

With a teacher (the unpruned baseline), the loss mixes the labels with the teacher's softened outputs (knowledge
distillation, Hinton et al. 2015): (1 - w) * CE(labels) + w * T^2 * KL(teacher_T || student_T). The teacher runs
on the same augmented batch, so it adds one forward pass of the baseline per step.

With `average_from`, the weights that come out are the uniform average of the weights after every step from that
share of the run on (stochastic weight averaging, Izmailov et al. 2018, taken densely as SWAD does for domain
generalisation: a flatter minimum that holds better on unseen domains).

With `distill_mixup` alpha, the student and the teacher see each batch mixed with a shuffled copy of itself
(mixup, Zhang et al. 2018, weight drawn from Beta(alpha, alpha)): the student matches the teacher's function on
images between the training images too ("function matching", Beyer et al. 2022), and the label term is mixed alike.

With `distill_tokens` w, the loss adds w times the mean squared difference between the student's and the teacher's
token relations: the cosine similarity of every two tokens of an image after the last block (as MiniLM distils
relations rather than features, Wang et al. 2020). A few class logits say little of how the teacher sees an image;
the relations of its tokens (197 for a ViT-B/16 at 224) say more, and need no projection between the pruned width
and the teacher's.

Under torchrun (see `edgeprune.distributed`) every process trains on its shard of each batch in
DistributedDataParallel, which averages the gradients; rank 0 alone evaluates and writes the checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from edgeprune.distributed import World, current
from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.workspace import atomic_path


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    max_steps_per_epoch: int | None = None
    seed: int = 0
    distill_weight: float = 0.0  # share of the distillation term; 0 = labels only
    distill_temperature: float = 2.0
    distill_mixup: float = 0.0  # Beta(alpha, alpha) mixup of the distilled batches; 0: none
    distill_tokens: float = 0.0  # weight of the token-relation term; 0: none
    checkpoint_every: int | None = None  # steps; None: at the end of each epoch only
    average_from: float | None = None  # share of the steps after which weights are averaged; None: last weights


def training_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    teacher_logits: torch.Tensor | None = None,
    mixed: tuple[torch.Tensor, float] | None = None,
) -> torch.Tensor:
    """`mixed`: the labels of the images mixed in and their share, for a batch made by `mix_batch`."""
    loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
    if mixed is not None:
        partner_labels, share = mixed
        partner = F.cross_entropy(logits, partner_labels, label_smoothing=config.label_smoothing)
        loss = (1 - share) * loss + share * partner
    if teacher_logits is None or config.distill_weight == 0:
        return loss
    t = config.distill_temperature
    soft = F.kl_div(
        F.log_softmax(logits.float() / t, dim=1),
        F.log_softmax(teacher_logits.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - config.distill_weight) * loss + config.distill_weight * t * t * soft


def token_relations(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, C) tokens -> (B, N, N) cosine similarity of every two tokens of each image."""
    unit = F.normalize(tokens.float(), dim=-1)
    return unit @ unit.transpose(1, 2)


def relation_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(token_relations(student_tokens), token_relations(teacher_tokens))


class TokenRelations:
    """While in a `with`: the student's and the teacher's last-block tokens of each forward pass (hooks), and the
    relation loss between them."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        # Under DistributedDataParallel the hook goes on the model inside the wrapper.
        self.blocks = [getattr(m, "module", m).blocks[-1] for m in (student, teacher)]
        self.tokens: list[torch.Tensor | None] = [None, None]

    def __enter__(self) -> TokenRelations:
        self.handles = [
            block.register_forward_hook(partial(self._keep, index)) for index, block in enumerate(self.blocks)
        ]
        return self

    def __exit__(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.tokens = [None, None]

    def _keep(self, index: int, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.tokens[index] = output

    def loss(self) -> torch.Tensor:
        student, teacher = self.tokens
        assert student is not None and teacher is not None, "both models run a forward pass first"
        return relation_loss(student, teacher)


def mix_batch(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, tuple[torch.Tensor, float]]:
    """The batch mixed with a shuffled copy of itself; with the copy's labels and share for `training_loss`."""
    keep = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(x)).to(x.device)
    return keep * x + (1 - keep) * x[order], (y[order], 1 - keep)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device) -> Any:
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | None = None,
    reporter: Reporter | None = None,
    description: str = "evaluate",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 predictions and labels over a loader, in float32 (so they compare exactly with fp32 engines)."""
    device = device or default_device()
    model.eval().to(device)
    preds, labels = [], []
    with (reporter or Reporter()).task(description, len(loader)) as advance:
        for x, y in loader:
            logits = model(x.to(device, non_blocking=True))
            preds.append(logits.argmax(1).cpu().numpy())
            labels.append(y.numpy())
            advance(1)
    if not preds:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(preds), np.concatenate(labels)


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float((preds == labels).mean()) if len(labels) else float("nan")


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@dataclass
class _Optimisation:
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()


def _optimisation(model: nn.Module, config: TrainConfig, total_steps: int, device: torch.device) -> _Optimisation:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, int(total_steps * config.warmup_fraction))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps, warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    return _Optimisation(optimizer, schedule, scaler)


class _WeightAverage:
    """The running uniform mean of a model's floating-point parameters and buffers from step `start` on."""

    def __init__(self, model: nn.Module, start: int) -> None:
        self.model, self.start, self.count = model, start, 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def observe(self, step: int) -> None:
        """After global step `step` (1-based)."""
        if step <= self.start:
            return
        self.count += 1
        for name, value in self.model.state_dict().items():
            if not value.is_floating_point():
                continue
            if name not in self.mean:
                self.mean[name] = value.detach().float().clone()
            else:
                self.mean[name] += (value.float() - self.mean[name]) / self.count

    @torch.no_grad()
    def apply(self) -> None:
        if self.count:
            state = self.model.state_dict()
            self.model.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in self.mean.items()}})

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "mean": {k: v.cpu() for k, v in self.mean.items()}}

    def load(self, state: dict[str, Any]) -> None:
        device = next(self.model.parameters()).device
        self.count, self.mean = state["count"], {k: v.to(device) for k, v in state["mean"].items()}


@dataclass
class _Position:
    """Where training stands: finished epochs, steps of the current one, and that epoch's running sums (over every
    process) so far."""

    epoch: int = 0
    step: int = 0
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _resume(
    checkpoint: Path, model: nn.Module, opt: _Optimisation, device: torch.device, average: _WeightAverage | None
) -> tuple[list[dict[str, float]], _Position, dict[str, Any] | None]:
    """The history and position of an interrupted attempt (with its RNG states, where it saved them), with model,
    optimiser and weight-average state restored."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.optimizer.load_state_dict(state["optimizer"])
        opt.schedule.load_state_dict(state["schedule"])
        if "scaler" in state:
            opt.scaler.load_state_dict(state["scaler"])
    except Exception as exc:
        raise EdgepruneError(f"cannot resume from {checkpoint}: {exc}; delete it to start this stage again") from None
    model.to(device)
    if average is not None and "average" in state:
        average.load(state["average"])
    position = _Position(**state.get("position", {"epoch": state["epoch"]}))
    return state["history"], position, state.get("rng")


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    steps: int,
    opt: _Optimisation,
    config: TrainConfig,
    teacher: nn.Module | None,
    advance: Any,
    world: World,
    position: _Position,
    save: Any,
    average: _WeightAverage | None = None,
    relations: TokenRelations | None = None,
) -> dict[str, float]:
    """The epoch's remaining steps from `position.step`; every `checkpoint_every` steps, `save(position)`.
    `relations`, entered by the caller, adds the token-relation term."""
    device = next(model.parameters()).device
    model.train()
    mine = _Position(position.epoch, position.step) if not world.is_main else position  # rank 0 holds the sums
    seen, loss_sum, correct = mine.seen, mine.loss_sum, mine.correct
    if position.step and hasattr(loader.sampler, "skip_next"):
        loader.sampler.skip_next(position.step * (loader.batch_size or 1))
        advance(position.step)
    step = position.step
    for x, y in loader:
        if step >= steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        mixed = None
        if teacher is not None and config.distill_mixup > 0:
            x, mixed = mix_batch(x, y, config.distill_mixup)
        with _autocast(device):
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
            logits = model(x)
            loss = training_loss(logits, y, config, teacher_logits, mixed)
            if relations is not None:
                loss = loss + config.distill_tokens * relations.loss()
        opt.step(loss)
        if average is not None:
            average.observe(position.epoch * steps + step + 1)
        seen += len(y)
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())  # of a mixed batch: the unshuffled images' labels
        step += 1
        advance(1, status=f"loss {loss_sum / seen:.3f}")
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < steps:
            totals = world.sum([seen, loss_sum, correct])
            save(_Position(position.epoch, step, int(totals[0]), float(totals[1]), int(totals[2])))
    seen, loss_sum, correct = world.sum([seen, loss_sum, correct])  # over every process's share
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen}


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)  # timm's random crop draws from Python's generator (workers=0: this one)


def _val_accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    return accuracy(*predict(model, loader, device))


def _weights_digest(model: nn.Module) -> tuple[float, float]:
    with torch.no_grad():
        return (
            sum(float(p.double().sum()) for p in model.parameters()),
            sum(float(p.double().square().sum()) for p in model.parameters()),
        )


def fine_tune(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    config: TrainConfig,
    checkpoint: Path,
    *,
    resume: bool = False,
    reporter: Reporter | None = None,
    label: str = "fine-tune",
    teacher: nn.Module | None = None,
) -> list[dict[str, float]]:
    """Train in place; after every epoch the state goes to `checkpoint`, from which `resume=True` continues."""
    reporter = reporter or Reporter()
    world = current()
    device = default_device()
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    steps_per_epoch = min(len(train_loader), config.max_steps_per_epoch or len(train_loader))
    opt = _optimisation(model, config, config.epochs * steps_per_epoch, device)
    history: list[dict[str, float]] = []
    position, rng = _Position(), None
    average = None
    if config.average_from is not None:
        average = _WeightAverage(model, int(config.epochs * steps_per_epoch * config.average_from))
    if resume and checkpoint.exists():
        history, position, rng = _resume(checkpoint, model, opt, device, average)
        where = f" and {position.step} steps" if position.step else ""
        reporter.info(f"{label}: resuming after epoch {position.epoch}/{config.epochs}{where}")
    _seed(world.augmentation_seed(config.seed + position.epoch))
    if rng is not None and not world.enabled:
        _set_rng_state(rng)  # exactly where the interrupted attempt was (augmentation in this process)
    net = world.wrap(model)
    relations = TokenRelations(net, teacher) if teacher is not None and config.distill_tokens > 0 else None

    def save(at: _Position) -> None:
        state = {"model": model.state_dict(), **opt.state(), "epoch": at.epoch, "position": asdict(at)}
        state.update(history=history, rng=_rng_state(), config=asdict(config))
        if average is not None:
            state["average"] = average.state()
        world.on_main(partial(_save_checkpoint, checkpoint, state), share=False)

    for epoch in range(position.epoch, config.epochs):
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every process
        at = position if position.epoch == epoch else _Position(epoch)
        task = reporter.task(f"{label} {epoch + 1}/{config.epochs}", steps_per_epoch)
        with task as advance, relations or contextlib.nullcontext():
            trained = _train_epoch(
                net, train_loader, steps_per_epoch, opt, config, teacher, advance, world, at, save, average, relations
            )
        record = {"epoch": epoch + 1, **trained}
        if val_loader is not None:
            record["val_accuracy"] = world.on_main(partial(_val_accuracy, model, val_loader, device))
        history.append(record)
        reporter.info(
            f"{label} epoch {epoch + 1}: loss {record['train_loss']:.3f}, train acc {record['train_accuracy']:.3f}"
            + (f", val acc {record['val_accuracy']:.3f}" if "val_accuracy" in record else "")
        )
        save(_Position(epoch + 1))
    if average is not None and average.count:
        average.apply()
        reporter.info(f"{label}: weights averaged over the last {average.count} steps")
    if world.enabled:
        world.all_same(_weights_digest(model), f"the weights after {label}")
    model.cpu().eval()
    if teacher is not None:
        teacher.cpu()
    return history
