"""One writer per run: the lock names its holder, dies with its process, and tells an interrupted run from a live
one; export and bench fall back from an interrupted latest run to the latest complete one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprune.errors import EdgepruneError
from edgeprune.pipeline.context import complete_run
from edgeprune.progress import Reporter
from edgeprune.runlock import RunBusy, holding, is_held
from edgeprune.workspace import Run, Workspace
from tests.conftest import Notes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs are locked with fcntl (POSIX only)")


def _hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    """A process that takes the run's lock, says so, and sleeps until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from edgeprune.runlock import holding
        with holding(Path({str(run_dir)!r}), "prune --model deit-tiny"):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[Run, subprocess.Popen]]:
    run = _make_run(Workspace(tmp_path), "busy", "running")
    proc = _hold_in_another_process(run.dir)
    yield run, proc
    proc.kill()
    proc.wait()


def _make_run(workspace: Workspace, name: str, status: str, finished: str | None = None) -> Run:
    run = workspace.create_run(name, {"status": status, "commands": [], "stages": {}})
    if finished:
        run.update_manifest(finished=finished)
    return run


def test_a_second_writer_is_told_which_process_holds_the_run(holder) -> None:
    run, proc = holder
    expected = rf"run 'busy' is being written by process {proc.pid} \(prune --model deit-tiny\)"
    with pytest.raises(RunBusy, match=expected), holding(run.dir):
        pass
    assert is_held(run.dir) and run.status() == "running"


def test_a_killed_writer_leaves_no_stale_lock_and_its_run_reads_interrupted(holder) -> None:
    run, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_held(run.dir)
    assert run.status() == "interrupted"  # the manifest still says "running"
    with holding(run.dir, "prune --resume"):
        assert is_held(run.dir)
    assert run.status() == "interrupted"


def test_two_runs_are_locked_apart(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    first, second = _make_run(workspace, "a", "running"), _make_run(workspace, "b", "running")
    proc = _hold_in_another_process(first.dir)
    try:
        with holding(second.dir, "prune"):  # another run of the same workspace is free
            assert second.status() == "running"
        assert first.status() == "running"
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    run = _make_run(Workspace(tmp_path), "r", "running")
    with holding(run.dir, "prune"), holding(run.dir, "export"):
        assert is_held(run.dir)
    assert not is_held(run.dir)


def test_export_and_bench_fall_back_to_the_latest_complete_run(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    _make_run(workspace, "old", "complete", finished="2026-01-01T00:00:00+00:00")
    _make_run(workspace, "newer", "complete", finished="2026-01-02T00:00:00+00:00")
    _make_run(workspace, "killed", "running")  # the latest run, killed: nobody holds its lock
    notes = Notes()
    assert complete_run(workspace, None, notes).name == "newer"
    assert "the latest run 'killed' is interrupted: using the latest complete run 'newer'" in notes.lines[0]
    with pytest.raises(EdgepruneError, match=r"'killed' was interrupted .*`edgeprune prune --run killed --resume`"):
        complete_run(workspace, "killed", notes)  # named: no fallback


def test_a_live_run_is_not_taken_for_complete(holder, tmp_path: Path) -> None:
    run, _ = holder
    with pytest.raises(EdgepruneError, match="still being written by another process"):
        complete_run(Workspace(tmp_path), run.name, Reporter())


def test_a_workspace_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgeprune.cli import app

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["prune", "--model", "vit-micro", "--random-init", "-w", str(blocker / "ws")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write the workspace" in " ".join(result.output.split())


def test_runs_marks_a_killed_run_interrupted(run_copy) -> None:
    from edgeprune.runs import summarize_run

    workspace, run = run_copy
    run.update_manifest(status="running")  # as a SIGKILL leaves it: nobody holds the lock
    assert summarize_run(run).status == "interrupted"
    proc = _hold_in_another_process(run.dir)
    try:
        assert summarize_run(run).status == "running"
    finally:
        proc.kill()
        proc.wait()
