"""`edgeprune prune`'s options: help and bounds here, defaults from `PruneRequest` (declared once, there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    Augmentation,
    Compensation,
    LatencyRanking,
    Metric,
    Normalization,
    TargetName,
    open_range,
)
from edgeprune.cli.choices import complete_models, profile_option
from edgeprune.config import AMOUNT_RANGE

_fraction = open_range(*AMOUNT_RANGE)

Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Alias (vit, deit, beit, deit-tiny, vit-micro, ...: `edgeprune models`) or any timm model name.",
        autocompletion=complete_models,
    ),
]
Ratio = Annotated[
    float,
    typer.Option(callback=_fraction, help="Fraction of all prunable channels and head dims to remove, in (0, 1)."),
]
MetricOpt = Annotated[Metric, typer.Option("--metric", help="Importance metric.")]
Data = Annotated[
    Path | None, typer.Option(help="DG data set ROOT/<domain>/<class>/<images> \\[default: the built-in data set].")
]
TargetDomain = Annotated[str, typer.Option(help="Domain held out of training and pruning.")]
Checkpoint = Annotated[Path | None, typer.Option(help="Weights: .safetensors or .pth state dict.")]
RandomInit = Annotated[bool, typer.Option("--random-init", help="Start from random weights (latency studies, tests).")]
BaselineEpochs = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Fine-tune the unpruned model first (0 = as loaded) \\[default: as many as --epochs when the classifier "
        "is new for the task (random, or weights made for other classes), else 0].",
        show_default=False,
    ),
]
Epochs = Annotated[int, typer.Option(min=0, help="Fine-tune epochs after pruning (0 = none).")]
BaselineRun = Annotated[str | None, typer.Option(help="Reuse the baseline of this earlier run.")]
PruneHeads = Annotated[bool, typer.Option("--prune-heads", help="Also remove whole attention heads.")]
WholeHeads = Annotated[
    bool,
    typer.Option(
        "--whole-heads",
        help="Prune attention by whole heads only, keeping every head's dims (faster on onnxruntime CPU, whose "
        "softmax costs per head: README, Results).",
    ),
]
RoundTo = Annotated[int | None, typer.Option(min=1, help="Keep pruned widths multiples of N.")]
TargetMacs = Annotated[
    float | None,
    typer.Option(callback=_fraction, help="Keep this fraction of the MACs instead of using --ratio (e.g. 0.4)."),
]
TargetParams = Annotated[
    float | None,
    typer.Option(callback=_fraction, help="Keep this fraction of the parameters instead of using --ratio."),
]
NormalizationOpt = Annotated[
    Normalization,
    typer.Option(
        "--normalization",
        help="How importance compares across groups: none (raw), mean or max (per group), cost (importance "
        "per multiply-accumulate removed; see --cost-exponent); auto = cost with exponent 0.75 for hessian and "
        "taylor, mean for the others.",
    ),
]
MaxShare = Annotated[
    float | None,
    typer.Option(help="Balance: no group loses more than this share of its units unless the amount needs it."),
]
CostExponent = Annotated[
    float | None,
    typer.Option(
        help="With --normalization cost: importance per MACs ** P removed \\[default: 1; 0.75 when auto picks cost, "
        "which weighs compute less and kept more of PACS's held-out domains: README, Results].",
        show_default=False,
    ),
]
Compensate = Annotated[
    bool,
    typer.Option(
        "--compensate/--no-compensate",
        help="Give back what removed units contributed (see --compensation) and correct LayerNorm statistics.",
    ),
]
CompensationOpt = Annotated[
    Compensation,
    typer.Option(
        "--compensation",
        help="fit: each removed input's least-squares fit on the kept inputs, folded into the next layer's weights "
        "and bias; mean: its mean, into the bias only.",
    ),
]
AllowNarrow = Annotated[
    bool, typer.Option("--allow-narrow", help="Let the embedding fall below 8 channels and heads below 4 dims.")
]
Distill = Annotated[
    bool | None,
    typer.Option(
        "--distill/--no-distill",
        help="Fine-tune against the baseline's soft outputs too \\[default: when the baseline has learnt the task: "
        "not a random init that nothing trained].",
        show_default=False,
    ),
]
DistillWeight = Annotated[float, typer.Option(help="Share of the distillation term in the loss.")]
DistillTemperature = Annotated[float, typer.Option(help="Softmax temperature of distillation.")]
DistillMixup = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Distil on batches mixed with a shuffled copy of themselves, the share drawn from Beta(alpha, alpha) "
        "(mixup; 0: off): the student matches the teacher between the training images too.",
    ),
]
DistillTokens = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Weight of a second distillation term: the student's last-block tokens keep the teacher's relations "
        "(cosine similarity of every two tokens of an image; 0: off).",
    ),
]
AverageFrom = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.999,
        help="Average the weights after every fine-tune step from this share of the fine-tune on (0.5: its second "
        "half; a flatter minimum that holds better on the held-out domain) \\[default: the last weights].",
        show_default=False,
    ),
]
Steps = Annotated[int, typer.Option(min=1, help="Prune in this many steps, with a short recovery between.")]
RecoverySteps = Annotated[int, typer.Option(min=0, help="Training steps of each recovery between pruning steps.")]
CalibBatches = Annotated[int, typer.Option(min=1, help="Source-domain batches that importance sees.")]
BatchSize = Annotated[
    int, typer.Option(min=1, help="Training and calibration batch size (under torchrun: the global batch).")
]
Lr = Annotated[float, typer.Option(help="Peak learning rate after pruning (AdamW, cosine).")]
BaselineLr = Annotated[float | None, typer.Option(help="Peak learning rate of the baseline \\[default: --lr].")]
AugmentOpt = Annotated[
    Augmentation,
    typer.Option(
        "--augment",
        help="Training augmentation: standard (crop, flip, colour jitter) or shape (besides, 70% of the images as "
        "line drawings and some in greyscale, so the class must be read from shape: for held-out sketches).",
    ),
]
MaxStepsPerEpoch = Annotated[int | None, typer.Option(min=1, help="Cap training steps per epoch.")]
CheckpointEvery = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Also checkpoint every N training steps, so that --resume continues mid-epoch (exactly so with "
        "--workers 0) \\[default: at each epoch's end].",
        show_default=False,
    ),
]
Workers = Annotated[int, typer.Option(min=0, help="Data-loading worker processes (per process under torchrun).")]
ClassesFrom = Annotated[
    str | None,
    typer.Option(
        help="Where domains have different class folders: a domain whose classes to use (other images are left "
        "out), or 'all' (every class found) \\[default: refuse; the domains must agree].",
        show_default=False,
    ),
]
Seed = Annotated[int, typer.Option(help="Seed of the split, sampling and training.")]
Evaluate = Annotated[
    bool,
    typer.Option(
        "--eval/--no-eval",
        help="Measure each stage's source-val and held-out accuracy (MACs, params and widths are always reported); "
        "a random model that nothing trained is never evaluated.",
    ),
]
EvalImages = Annotated[
    int | None, typer.Option(min=1, help="Evaluate on this many images of each split (seeded sample) \\[default: all].")
]
NewRun = Annotated[str | None, typer.Option("--run", help="Name of the new run (or of the run to resume).")]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue an interrupted run with its saved options (other options are ignored)."),
]
TargetLatency = Annotated[
    float | None,
    typer.Option(
        min=0,
        help="Prune to this p50 latency in ms on --target at the profile's batch and threads, as the latency table "
        "predicts it; the pruned model is then measured (and pruned again, aimed better, if it misses by over 5%).",
    ),
]
TargetSpeedup = Annotated[
    float | None,
    typer.Option(min=1, help="Prune to this speed-up over the unpruned model's measured latency (e.g. 2)."),
]
LatencyProfile = profile_option(
    "the batch, threads and alignment of latency targets \\[default: cpu-x86 / cpu-arm64, server-gpu for GPU targets]."
)
LatencyTarget = Annotated[
    TargetName | None,
    typer.Option("--target", help="The engine whose latency counts \\[default: the profile's default target]."),
]
LatencyTablePath = Annotated[
    Path | None,
    typer.Option(
        help="A latency table (from `edgeprune latency-table`, e.g. measured on the device) \\[default: the "
        "workspace's for this model, profile and target, measured first when there is none].",
        show_default=False,
    ),
]
LatencyRankingOpt = Annotated[
    LatencyRanking,
    typer.Option(
        "--latency-ranking",
        help="With a latency target: rank units by importance alone, as for a ratio (importance; measured better on "
        "PACS), or by importance per ms they save (per-ms).",
    ),
]
