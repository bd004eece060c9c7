"""`edgeprune demo`: the whole path offline on the built-in data set with a 4-block ViT from its bundled weights."""

from __future__ import annotations

from pathlib import Path

from edgeprune.pipeline.bench import run_bench
from edgeprune.pipeline.export import run_export
from edgeprune.pipeline.prune import run_prune
from edgeprune.progress import Reporter
from edgeprune.requests import BenchRequest, ExportRequest, PruneRequest
from edgeprune.results import BenchReport
from edgeprune.targets import DEFAULT_TARGET
from edgeprune.workspace import Run, Workspace


def demo_request(data: Path | None = None) -> PruneRequest:
    """vit-micro from its bundled weights (`scripts/pretrain_micro.py`: never a sketch), fine-tuned on photo,
    art_painting and cartoon with the shape augmentation (line drawings), pruned by half; held out: sketch."""
    return PruneRequest(
        model="vit-micro",
        ratio=0.5,
        metric="hessian",
        data=data,
        target_domain="sketch",
        baseline_epochs=8,
        epochs=3,
        lr=5e-4,
        baseline_lr=5e-4,
        augment="shape",
        calib_batches=4,
        normalization="none",  # the demo's recipe as measured for the README (auto's choice before --cost-exponent)
        distill=False,  # the demo's recipe as measured for the README
        batch_size=32,
        workers=0,  # the README's demo figures were measured loading in the main process
    )


def run_demo(
    workspace: Workspace,
    *,
    run_name: str | None = None,
    request: PruneRequest | None = None,
    reporter: Reporter | None = None,
) -> tuple[Run, BenchReport]:
    reporter = reporter or Reporter()
    request = request or demo_request()
    run = run_prune(request, workspace, run_name=run_name, reporter=reporter)
    run_export(workspace, ExportRequest(target=DEFAULT_TARGET), run.name, reporter)
    return run_bench(workspace, BenchRequest(target=DEFAULT_TARGET, domain="sketch"), run.name, reporter)
