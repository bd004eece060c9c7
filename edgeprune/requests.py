"""What each command asks for, declared once: the CLI takes its defaults from these and the pipeline checks them.

Importable without torch, so `edgeprune --help` stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune.config import AUGMENTATIONS, Amount, resolve_legacy_auto
from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    from edgeprune.config import PruneConfig
    from edgeprune.models.registry import ModelSpec

DEFAULT_OPSET = 17


@dataclass
class PruneRequest:
    model: str
    ratio: float = 0.5
    metric: str = "hessian"
    data: Path | None = None  # default: the built-in data set
    target_domain: str = "sketch"
    classes_from: str | None = None  # a domain whose classes to use, or "all"; None: domains must agree
    checkpoint: Path | None = None
    random_init: bool = False
    baseline_epochs: int | None = None  # None: as many as `epochs` when the classifier is new, else 0
    epochs: int = 1
    baseline_run: str | None = None
    prune_heads: bool = False
    whole_heads: bool = False
    round_to: int | None = None
    target_macs: float | None = None
    target_params: float | None = None
    target_latency: float | None = None  # ms on `target` (default: the profile's), as its latency table predicts
    target_speedup: float | None = None  # over the unpruned model's measured latency
    profile: str | None = None  # for latency targets; default: by target, as export chooses
    target: str | None = None  # the engine whose latency counts; default: the profile's
    latency_table: Path | None = None  # default: the workspace's table for model, profile and target (made if none)
    latency_ranking: str = "importance"  # LATENCY_RANKINGS: importance alone, or importance per ms saved
    calib_batches: int = 16  # 512 images: right after pruning, sketch 0.385 -> 0.472, art_painting 0.290 -> 0.393
    batch_size: int = 32
    lr: float = 1e-4
    baseline_lr: float | None = None  # default: lr
    max_steps_per_epoch: int | None = None
    augment: str = "standard"  # AUGMENTATIONS: standard, or shape (line drawings and greyscale besides)
    checkpoint_every: int | None = None  # training steps between checkpoints; None: each epoch's end
    val_fraction: float = 0.1
    evaluate: bool = True
    eval_images: int | None = None  # evaluate on this many images per split (seeded sample); None: all
    workers: int = 2
    seed: int = 0
    normalization: str = "auto"
    max_share: float | None = None
    cost_exponent: float | None = None  # None: 1 for --normalization cost, 0.75 when auto picks cost
    compensate: bool = True
    compensation: str = "fit"  # COMPENSATIONS
    allow_narrow: bool = False
    distill: bool | None = None  # None: when the baseline has learnt the task (`recovery.distills`)
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    distill_mixup: float = 0.0  # Beta(alpha, alpha) mixup of the distilled batches; 0: none
    distill_tokens: float = 0.0  # weight of the token-relation term of distillation; 0: none
    average_from: float | None = None  # share of the fine-tune after pruning from which weights are averaged
    steps: int = 1
    recovery_steps: int = 50

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PruneRequest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("compensation", "mean")  # a run recorded before the option compensated with the mean
        if "cost_exponent" not in values and values.get("normalization", "auto") == "auto":
            values["normalization"] = resolve_legacy_auto(values.get("metric", "hessian"))  # auto meant none then
        for key in ("data", "checkpoint", "latency_table"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)

    def validate(self) -> ModelSpec:
        from edgeprune.models.registry import resolve_model

        spec = resolve_model(self.model)
        self.prune_config().validate()
        self._check_training()
        if self.checkpoint is not None and self.random_init:
            raise EdgepruneError("--checkpoint and --random-init exclude each other: give one")
        if self.checkpoint is not None and not self.checkpoint.is_file():
            raise EdgepruneError(f"checkpoint {self.checkpoint} does not exist")
        self._check_latency_options()
        return spec

    def _check_latency_options(self) -> None:
        if not self.amount().needs_latency_table:
            given = [f"--{n.replace('_', '-')}" for n in ("profile", "target", "latency_table") if getattr(self, n)]
            if given:
                raise EdgepruneError(f"{', '.join(given)} apply to --target-latency or --target-speedup only")
            return
        if self.steps > 1:
            raise EdgepruneError("--target-latency and --target-speedup prune in one step: leave out --steps")
        if self.target is not None:
            from edgeprune.targets import resolve_target

            resolve_target(self.target)
        if self.profile is not None:
            from edgeprune.profiles import find_profile

            find_profile(self.profile)
        if self.latency_table is not None and not self.latency_table.is_file():
            raise EdgepruneError(f"latency table {self.latency_table} does not exist")

    def _check_training(self) -> None:
        for name in ("baseline_epochs", "epochs"):
            if (getattr(self, name) or 0) < 0:
                raise EdgepruneError(f"--{name.replace('_', '-')} must be 0 or more")
        if self.calib_batches < 1 or self.batch_size < 1:
            raise EdgepruneError("--calib-batches and --batch-size must be at least 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise EdgepruneError("--max-steps-per-epoch must be at least 1 (leave it out for whole epochs)")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise EdgepruneError("--checkpoint-every must be at least 1 (leave it out for one checkpoint per epoch)")
        if self.workers < 0:
            raise EdgepruneError("--workers must be 0 (load in the main process) or more")
        if self.lr <= 0 or (self.baseline_lr is not None and self.baseline_lr <= 0):
            raise EdgepruneError("learning rates must be positive")
        if self.augment not in AUGMENTATIONS:
            raise EdgepruneError(f"--augment must be one of {', '.join(AUGMENTATIONS)} (got {self.augment!r})")
        if self.eval_images is not None and self.eval_images < 1:
            raise EdgepruneError("--eval-images must be at least 1 (or --no-eval to skip evaluation)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise EdgepruneError("the validation fraction must be in [0, 1)")
        if self.steps < 1 or self.recovery_steps < 0:
            raise EdgepruneError("--steps must be at least 1 and --recovery-steps 0 or more")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise EdgepruneError("--distill-weight is a share in [0, 1] and --distill-temperature must be positive")
        if self.distill_mixup < 0:
            raise EdgepruneError("--distill-mixup is mixup's alpha: 0 (off) or more, e.g. 0.4")
        if self.distill_tokens < 0:
            raise EdgepruneError("--distill-tokens is the weight of the token-relation term: 0 (off) or more, e.g. 1")
        if self.average_from is not None and not 0.0 <= self.average_from < 1.0:
            raise EdgepruneError("--average-from is a share of the fine-tune in [0, 1), e.g. 0.5 for its second half")

    def baseline_epochs_for(self, head_trained: bool) -> int:
        """--baseline-epochs, or by default: a classifier that is new for the task (random, or re-initialised
        because the weights were made for other classes) is fine-tuned as long as the pruned model, so that the
        baseline is a baseline; a checkpoint already trained for the task is not trained again."""
        if self.baseline_epochs is not None:
            return self.baseline_epochs
        return 0 if head_trained else self.epochs

    def has_learnt(self, stage: str) -> bool:
        """Whether a stage's model was trained at all: a random init that nothing trained scores chance."""
        baseline = not self.random_init or self.baseline_run is not None or self.baseline_epochs_for(False) > 0
        return baseline or (stage == "finetuned" and self.epochs > 0)

    def prune_config(self) -> PruneConfig:
        from edgeprune.config import PruneConfig

        return PruneConfig(
            metric=self.metric,
            ratio=self.ratio,
            prune_heads=self.prune_heads,
            whole_heads=self.whole_heads,
            round_to=self.round_to,
            target_macs=self.target_macs,
            target_params=self.target_params,
            target_latency=self.target_latency,
            latency_ranking=self.latency_ranking,
            normalization=self.normalization,
            max_share=self.max_share,
            cost_exponent=self.cost_exponent,
            compensate=self.compensate and self.has_learnt("pruned"),  # a random model has nothing to keep
            compensation=self.compensation,
            allow_narrow=self.allow_narrow,
        )

    def amount(self) -> Amount:
        return Amount.choose(self.ratio, self.target_macs, self.target_params, self.target_latency, self.target_speedup)

    def default_run_name(self) -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return f"{self.model.replace('_', '-')}-{self.metric}-{self.amount().tag()}-{stamp}"


@dataclass
class ExportRequest:
    target: str | None = None  # default: the profile's default target, else ort-cpu
    profile: str | None = None  # name or TOML path; default: by target (server-gpu, cpu-x86 or cpu-arm64)
    parity_images: int = 128
    opset: int = DEFAULT_OPSET
    force: bool = False
    data: Path | None = None  # the run's data set, where it is mounted elsewhere than when the run was made

    def validate(self) -> None:
        if self.parity_images < 1:
            raise EdgepruneError("--parity-images must be at least 1")
        if self.opset < DEFAULT_OPSET:
            raise EdgepruneError(f"--opset must be {DEFAULT_OPSET} or more (LayerNormalization)")


@dataclass
class BenchRequest:
    target: str | None = None  # default: the profile's default target, else ort-cpu
    domain: str | None = None  # default: the run's held-out domain
    data: Path | None = None  # the run's data set, where it is mounted elsewhere than when the run was made
    batch: int | None = None  # default: the profile's opt batch, else 1
    threads: int | None = None  # default: the profile's threads, else all cores
    warmup: int = 10
    iterations: int = 50
    max_images: int | None = None
    profile: str | None = None  # a profile's batch, threads and gate (latency budget, accuracy drop) apply
    min_agreement: float | None = None  # default: by precision (fp32 0.99, fp16 0.98, int8 0.97)
    max_engine_drop: float = 0.01
    max_drop: float | None = None  # default: the profile's max_accuracy_drop, else not checked
    explain: bool = True  # onnxruntime CPU targets: a per-part and per-op latency breakdown in the report

    def validate(self) -> None:
        for name in ("batch", "threads", "max_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EdgepruneError(f"--{name.replace('_', '-')} must be at least 1")
        if self.warmup < 0 or self.iterations < 1:
            raise EdgepruneError("--warmup must be 0 or more and --iterations at least 1")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise EdgepruneError("--min-agreement is a share of images, in [0, 1]")
