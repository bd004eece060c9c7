"""`edgeprune prune` under torchrun: two CPU processes (gloo) against one, on the tiny model and data set."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from edgeprune.cli import EXIT_ERROR, app
from edgeprune.data.loaders import make_loader
from edgeprune.distributed import World
from edgeprune.errors import EdgepruneError
from edgeprune.pipeline.prune import run_prune
from edgeprune.progress import Reporter
from edgeprune.workspace import Workspace, read_json
from tests.conftest import tiny_request

REPO = Path(__file__).resolve().parents[1]
# The CLI form of tests.conftest.tiny_request(data, baseline_epochs=0): no baseline training, so both runs prune
# the same (seeded) random-init model, and the pruned shapes must agree.
OPTIONS = {
    "model": "vit-micro",
    "ratio": 0.5,
    "metric": "l2",
    "target-domain": "sketch",
    "baseline-epochs": 0,
    "epochs": 1,
    "max-steps-per-epoch": 2,
    "calib-batches": 1,
    "batch-size": 16,
    "lr": 1e-3,
    "workers": 0,
}
needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)


def _torchrun(log_dir: Path, *args: object) -> dict[int, str]:
    """`edgeprune prune ARGS` in two processes; each rank's stdout + stderr."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    # this checkout's edgeprune, on the CPU (gloo) even where a GPU would make it choose NCCL
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["--log-dir", str(log_dir), "--redirects", "3", "-m", "edgeprune", "--", "prune", *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    logs = {rank: sorted(log_dir.rglob(f"attempt_0/{rank}/std*.log")) for rank in (0, 1)}  # stdout, stderr
    output = {rank: "".join(p.read_text() for p in files) for rank, files in logs.items()}
    assert done.returncode == 0, (done.stderr[-3000:], output)
    assert all(len(files) == 2 for files in logs.values()), logs
    return output


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@needs_gloo
def test_two_processes_make_the_run_one_process_makes(builtin_root: Path, tmp_path: Path) -> None:
    single = run_prune(tiny_request(builtin_root, baseline_epochs=0), Workspace(tmp_path / "one"), run_name="r")
    args = [f"--{k}={v}" for k, v in OPTIONS.items()] + ["--random-init", "--data", builtin_root]
    output = _torchrun(tmp_path / "logs", "--workspace", tmp_path / "two", "--run", "r", *args)

    two = Workspace(tmp_path / "two").get_run("r")
    manifest = two.manifest()
    assert manifest["request"] == single.manifest()["request"]  # the same command
    assert manifest["status"] == "complete"
    # Rank 0 alone wrote: the same files as one process, once each (no rank copies, temporaries or checkpoints).
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    assert all(manifest["stages"][s]["processes"] == 2 for s in ("baseline", "pruned", "finetuned"))
    assert "finetuned: source val acc" in output[0] and "per-block widths" in output[0]
    assert output[1] == "", output[1]  # the other process prints nothing
    # The same baseline, pruned to the same shapes; the fine-tune trained it together (the processes checked
    # after training that they hold the same weights).
    assert manifest["stages"]["baseline"]["model_sha256"] == single.manifest()["stages"]["baseline"]["model_sha256"]
    for stage in ("pruned", "finetuned"):
        assert read_json(two.stage(stage) / "arch.json") == read_json(single.stage(stage) / "arch.json"), stage
    history = two.metrics("finetuned").history
    assert [h["epoch"] for h in history] == [1] and 0 <= history[0]["val_accuracy"] <= 1


class _InterruptAt(Reporter):
    def __init__(self, task: str):
        self.at = task

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator:
        if description.startswith(self.at):
            raise KeyboardInterrupt
        yield lambda n=1, status=None: None


@needs_gloo
def test_an_interrupted_run_resumes_under_torchrun(builtin_root: Path, tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    request = tiny_request(builtin_root, baseline_epochs=0, epochs=2)
    with pytest.raises(KeyboardInterrupt):  # one process, stopped after the first fine-tune epoch
        run_prune(request, workspace, run_name="r", reporter=_InterruptAt("fine-tune 2/2"))
    run = workspace.get_run("r")
    first = torch.load(run.dir / "checkpoints" / "finetune.pt", weights_only=True)["history"]
    assert [h["epoch"] for h in first] == [1] and not run.has_stage("finetuned")

    output = _torchrun(tmp_path / "logs", "--workspace", workspace.root, "--resume", "--run", "r")
    manifest = run.manifest()
    assert manifest["status"] == "complete" and len(manifest["commands"]) == 2
    assert "processes" not in manifest["stages"]["pruned"] and manifest["stages"]["finetuned"]["processes"] == 2
    history = run.metrics("finetuned").history
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == first[0]  # continued, not started again
    assert "resuming after epoch 1/2" in output[0] and output[1] == ""
    assert not (run.dir / "checkpoints").exists()


def test_the_global_batch_splits_evenly() -> None:
    assert World(rank=1, world_size=4).per_rank_batch(32) == 8
    assert World().per_rank_batch(30) == 30
    with pytest.raises(EdgepruneError, match="does not split evenly over 4 processes"):
        World(rank=0, world_size=4).per_rank_batch(30)


def test_shards_split_every_epoch(tmp_path: Path) -> None:
    samples = [(tmp_path / f"{i}.png", i % 3) for i in range(11)]

    def epoch(rank: int, number: int) -> list[int]:
        loader = make_loader(samples, None, 2, shuffle=True, seed=5, shard=(rank, 2))
        loader.sampler.set_epoch(number)
        return list(loader.sampler)

    for number in (0, 1):
        shares = [epoch(0, number), epoch(1, number)]
        assert len(shares[0]) == len(shares[1]) == 6  # padded to equal shares: every rank takes as many steps
        assert set(shares[0]) | set(shares[1]) == set(range(11))
    assert epoch(0, 0) != epoch(0, 1)  # shuffled again each epoch


def test_only_prune_runs_under_torchrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    result = CliRunner().invoke(app, ["export", "--workspace", str(tmp_path)])
    assert result.exit_code == EXIT_ERROR
    assert "only `edgeprune prune` runs under torchrun, not `export`" in result.output
