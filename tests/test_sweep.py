"""`edgeprune sweep` and `edgeprune report`: cells, baseline reuse, resuming, failures, and the report's files.

One small sweep (l2 and random x ratios 0.5 and 0.999, sketch held out, ort-cpu) is made once through the CLI: two
cells run in full (the l2 one trains the baseline, the random one reuses it) and the two 0.999 cells fail at
pruning, below the floors. Tests that write into it take a copy. Where Ray is installed, the same sweep is made
again with --executor ray, and must give the same cells and the same report but for timings.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeprune.cli import EXIT_ERROR, app
from edgeprune.errors import EdgepruneError
from edgeprune.progress import Reporter
from edgeprune.sweep import load_spec, read_sweep
from edgeprune.sweep.cell import CellOutcome, CellTask
from edgeprune.sweep.executor import LocalExecutor
from edgeprune.sweep.plan import held_out_domains
from edgeprune.sweep.runner import SweepListener, run_sweep
from edgeprune.workspace import Workspace

NAME = "t"
LEADER, REUSER = f"{NAME}-vit-micro-l2-r0.5-sketch-s0", f"{NAME}-vit-micro-random-r0.5-sketch-s0"
FAILING = [f"{NAME}-vit-micro-l2-r0.999-sketch-s0", f"{NAME}-vit-micro-random-r0.999-sketch-s0"]
runner = CliRunner()


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def sweep_args(data: Path, workspace: Path) -> list[object]:
    return [
        "sweep", "--models", "vit-micro", "--random-init", "--metrics", "l2,random", "--ratios", "0.5",
        "--ratios", "0.999", "--domains", "sketch", "--targets", "ort-cpu", "--data", data, "--baseline-epochs", 1,
        "--epochs", 1, "--max-steps-per-epoch", 2, "--workers", 0, "--set", "batch_size=16", "--set",
        "calib_batches=1", "--set", "lr=1e-3", "--name", NAME, "--workspace", workspace,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def swept(builtin_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Path]:
    root = tmp_path_factory.mktemp("sweep-ws")
    result = invoke(*sweep_args(builtin_root, root))
    assert result.exit_code == 1, result.output  # two cells failed
    return Workspace(root), builtin_root


@pytest.fixture
def swept_copy(swept, tmp_path: Path) -> tuple[Workspace, Path]:
    workspace, data = swept
    copy = tmp_path / "ws"
    shutil.copytree(workspace.root, copy)
    return Workspace(copy), data


def test_cells_are_named_by_their_settings_and_share_one_baseline(swept) -> None:
    workspace, _ = swept
    record = read_sweep(workspace, NAME)
    assert [c.name for c in record.cells] == [LEADER, FAILING[0], REUSER, FAILING[1]]
    expected = {LEADER: "done", REUSER: "done", **dict.fromkeys(FAILING, "failed")}
    assert {c.name: c.status for c in record.cells} == expected
    assert all(c.elapsed_s is not None and c.elapsed_s > 0 for c in record.cells)
    stages = {name: workspace.get_run(name).manifest()["stages"] for name in (LEADER, REUSER)}
    assert "reused_from" not in stages[LEADER]["baseline"]
    assert stages[REUSER]["baseline"]["reused_from"] == LEADER
    assert stages[REUSER]["baseline"]["model_sha256"] == stages[LEADER]["baseline"]["model_sha256"]
    assert workspace.get_run(REUSER).bench_path("ort-cpu", "sketch").exists()


def test_a_failing_cell_is_recorded_and_the_others_finish(swept) -> None:
    workspace, _ = swept
    record = read_sweep(workspace, NAME)
    for name in FAILING:
        assert "floors" in (record.cell(name).error or ""), record.cell(name).error
        assert "\n" not in (record.cell(name).error or "")
    assert record.cell(REUSER).status == "done"  # ran after the failing l2 cell


def test_a_second_invocation_skips_done_cells(swept) -> None:
    workspace, data = swept
    runs = workspace.list_runs()
    mtimes = {p: p.stat().st_mtime_ns for p in workspace.root.rglob("*") if p.is_file() and "sweeps" not in p.parts}
    start = time.perf_counter()
    result = invoke(*sweep_args(data, workspace.root))
    assert time.perf_counter() - start < 10
    assert result.exit_code == 1  # the failed cells stay failed
    assert "0 to run" in result.output and "--retry-failed" in result.output
    assert workspace.list_runs() == runs
    assert mtimes == {p: p.stat().st_mtime_ns for p in mtimes}


class _Recorder(SweepListener):
    def __init__(self, interrupt_in: str | None = None):
        self.started_cells: list[str] = []
        self.interrupt_in = interrupt_in

    def started(self, cell) -> None:
        self.started_cells.append(cell.name)

    def cell_reporter(self) -> Reporter:
        listener = self

        class _Interrupting(Reporter):
            @contextlib.contextmanager
            def task(self, description: str, total: int | None) -> Iterator:
                if listener.interrupt_in and description.startswith(listener.interrupt_in):
                    raise KeyboardInterrupt
                yield lambda n=1, status=None: None

        return _Interrupting()


def test_retry_failed_runs_only_the_failed_cells(swept_copy) -> None:
    workspace, data = swept_copy
    spec = load_spec(None, _spec_values(data))
    recorder = _Recorder()
    record = run_sweep(spec, workspace, listener=recorder, retry_failed=True)
    assert recorder.started_cells == FAILING
    assert [record.cell(n).status for n in FAILING] == ["failed", "failed"]


def test_an_interrupted_cell_resumes_from_its_finished_stages(swept_copy) -> None:
    workspace, data = swept_copy
    shutil.rmtree(workspace.root / REUSER)  # as if the sweep had stopped before this cell
    record_path = workspace.root / "sweeps" / NAME / "sweep.json"
    record = json.loads(record_path.read_text())
    next(c for c in record["cells"] if c["name"] == REUSER)["status"] = "pending"
    record_path.write_text(json.dumps(record))
    spec = load_spec(None, _spec_values(data))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, workspace, listener=_Recorder(interrupt_in="fine-tune"))
    assert read_sweep(workspace, NAME).cell(REUSER).status == "pending"
    run = workspace.get_run(REUSER)
    assert run.manifest()["status"] == "running" and run.has_stage("pruned") and not run.has_stage("finetuned")
    recorder = _Recorder()
    record = run_sweep(spec, workspace, listener=recorder)
    assert recorder.started_cells == [REUSER]
    assert record.cell(REUSER).status == "done"
    assert len(run.manifest()["commands"]) == 2  # resumed, not made again


def test_a_cell_that_fails_because_of_an_interrupt_is_resumed_not_failed(swept_copy) -> None:
    """As on a device: Ctrl-C also kills the data-loading workers, and the cell fails with the loader's RuntimeError
    while the interrupt itself is swallowed. The cell must be left to resume, and the sweep must stop."""
    workspace, data = swept_copy
    spec = load_spec(None, _spec_values(data))
    started: list[str] = []

    def failing_after_sigint(cell) -> CellOutcome:
        started.append(cell.name)
        with contextlib.suppress(KeyboardInterrupt):  # the interrupt lost inside a library
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        return CellOutcome(cell.name, "failed", 0.1, "RuntimeError: DataLoader worker exited unexpectedly")

    class _Executor(LocalExecutor):
        def run(self, cells, fn, on_start=None):
            return super().run(cells, failing_after_sigint, on_start)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (nohup would ignore it)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, workspace, executor=_Executor(), retry_failed=True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started == FAILING[:1]  # stopped after the first
    statuses = {c.name: c.status for c in read_sweep(workspace, NAME).cells}
    assert statuses[FAILING[0]] == "pending" and statuses[FAILING[1]] == "failed"  # as before the run


def _spec_values(data: Path) -> dict[str, object]:
    return dict(
        name=NAME, models=["vit-micro"], random_init=True, metrics=["l2", "random"], ratios=[0.5, 0.999],
        domains=["sketch"], targets=["ort-cpu"], data=str(data), baseline_epochs=1, epochs=1, max_steps_per_epoch=2,
        workers=0, prune={"batch_size": 16, "calib_batches": 1, "lr": 1e-3},
    )  # fmt: skip


def test_report_files(swept_copy) -> None:
    workspace, _ = swept_copy
    result = invoke("report", NAME, "--workspace", workspace.root)
    assert result.exit_code == 0, result.output
    assert "recommendation ort-cpu: deploy" in " ".join(result.output.split())
    folder = workspace.root / "sweeps" / NAME
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert sorted(r["cell"] for r in rows) == sorted([LEADER, REUSER, *FAILING])
    for row in rows:
        if row["status"] == "done":
            run = workspace.get_run(row["cell"])
            assert float(row["held_out_pruned"]) == run.metrics("finetuned").held_out_accuracy
            assert float(row["held_out_baseline"]) == run.metrics("baseline").held_out_accuracy
            assert float(row["source_val_pruned"]) == run.metrics("finetuned").source_val_accuracy
            assert float(row["latency_p50_ms"]) == run.bench_report("ort-cpu", "sketch").latency_ms["p50"]
        else:
            assert row["held_out_pruned"] == "" and "floors" in row["error"]
    report = (folder / "report.md").read_text()
    assert "source-domain validation accuracy only" in report and "| sketch | avg |" in report
    assert "**deploy**" in report
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pareto = json.loads((folder / "pareto.json").read_text())["targets"][0]
    points = [(p["p50_ms"], p["held_out"]) for p in pareto["points"]]
    assert len(points) == 3  # two settings and the baseline
    for p in pareto["frontier"]:
        x, y = p["p50_ms"], p["held_out"]
        assert not any(a <= x and b >= y and (a, b) != (x, y) for a, b in points), p["label"]
    assert json.loads((folder / "results.json").read_text())["rows"][0]["cell"] in (LEADER, FAILING[0])


def test_a_changed_spec_does_not_continue_a_sweep(swept) -> None:
    workspace, data = swept
    spec = load_spec(None, {**_spec_values(data), "epochs": 2})
    with pytest.raises(EdgepruneError, match="exists with other settings.*epochs: 1 -> 2"):
        run_sweep(spec, workspace)


def test_spec_file_with_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "paper.toml"
    path.write_text('models = ["deit-tiny"]\nmetrics = ["hessian", "l2"]\nratios = [0.5, 0.75]\n[prune]\nlr = 5e-4\n')
    spec = load_spec(path, {"ratios": [0.3], "seeds": [0, 1]})
    assert (spec.name, spec.metrics, spec.ratios, spec.seeds, spec.prune) == (
        "paper",
        ["hessian", "l2"],
        [0.3],
        [0, 1],
        {"lr": 5e-4},
    )
    assert load_spec(path, {"prune": {"batch_size": 8}}).prune == {"lr": 5e-4, "batch_size": 8}
    assert [a.tag() for a in load_spec(None, {"models": ["m"], "target_macs": [0.4]}).amounts()] == ["macs0.4"]
    assert load_spec(None, {"models": ["m"]}).name == load_spec(None, {"models": ["m"], "workers": 0}).name
    assert held_out_domains(load_spec(None, {"models": ["m"]}), ["a", "b"]) == ["a", "b"]
    task = CellTask(spec, Workspace(tmp_path), Reporter())
    assert pickle.loads(pickle.dumps(task.detached())).spec == spec  # what a remote executor would ship


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the models to sweep"),
        (["--models", "vit-micro", "--metrics", "l3"], "unknown metric(s) l3"),
        (["--models", "vit-micro", "--ratios", "1.5"], "strictly between 0 and 1"),
        (["--models", "vit-micro", "--ratios", "half"], "--ratios takes float values"),
        (["--models", "vit-micro", "--targets", "tpu"], "unknown --target 'tpu'"),
        (["--models", "vit-micro", "--set", "depth=3"], "unknown prune option(s) depth"),
        (["--models", "vit-micro", "--set", "lr"], "--set takes key=value"),
        (["--models", "vit-micro", "--executor", "slurm"], "unknown --executor 'slurm'"),
        (["--models", "vit-micro", "--address", "auto"], "--address: only with --executor ray"),
        (["--models", "vit-micro", "--executor", "ray", "--cpus-per-cell", "0"], "--cpus-per-cell must be above 0"),
    ],
)
def test_sweep_rejects_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke("sweep", "--workspace", tmp_path, *args)
    assert result.exit_code == EXIT_ERROR, result.output
    assert message in " ".join(result.output.split()), result.output


def test_report_names_what_it_cannot_find(tmp_path: Path) -> None:
    result = invoke("report", "--workspace", tmp_path)
    assert result.exit_code == EXIT_ERROR and "no sweep in workspace" in " ".join(result.output.split())
    result = invoke("report", "nothing", "--workspace", tmp_path)
    assert result.exit_code == EXIT_ERROR and "neither a sweep nor a run" in " ".join(result.output.split())


def test_help_has_examples() -> None:
    for command in ("sweep", "report"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_executor_ray_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    result = invoke("sweep", "--models", "vit-micro", "--executor", "ray", "--workspace", tmp_path)
    assert result.exit_code == EXIT_ERROR, result.output
    assert "--executor ray needs Ray: pip install 'edgeprune[ray]'" in " ".join(result.output.split())
    assert not any(tmp_path.iterdir())  # failed before planning anything


# The same sweep with --executor ray on a local Ray (2 CPUs): skipped where Ray, an optional extra, is not installed.
RAY_MISSING = "Ray is an optional extra: pip install 'edgeprune[ray]'"
TIMING_COLUMNS = {
    "latency_p50_ms", "latency_p90_ms", "throughput_ips", "baseline_latency_p50_ms", "baseline_latency_p90_ms",
    "speedup", "elapsed_s",
}  # fmt: skip


@pytest.fixture(scope="module")
def ray_swept(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    ray = pytest.importorskip("ray", reason=RAY_MISSING)  # before the local sweep is made, when it is not needed
    _, data = request.getfixturevalue("swept")
    root = tmp_path_factory.mktemp("sweep-ray-ws")
    ray.init(num_cpus=2, include_dashboard=False)
    try:  # 2 CPUs per cell: the cells' torch uses 2 threads, as the local sweep does, for the same numbers
        result = invoke(*sweep_args(data, root), "--executor", "ray", "--cpus-per-cell", 2)
    finally:
        ray.shutdown()
    assert result.exit_code == 1, result.output  # the same two cells failed
    return Workspace(root), result.output


def test_ray_address_is_checked_before_planning(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason=RAY_MISSING)
    for address, message in [
        ("127.0.0.1:1", "cannot reach a Ray cluster at --address 127.0.0.1:1"),  # rather than Ray's long retries
        ("nonsense", "--address takes auto or HOST:PORT (got 'nonsense')"),
    ]:
        result = invoke("sweep", "--models", "vit-micro", "--executor", "ray", "--address", address, "-w", tmp_path)
        assert result.exit_code == EXIT_ERROR and message in " ".join(result.output.split()), result.output
    assert not any(tmp_path.iterdir())


def test_ray_executor_runs_the_same_cells(ray_swept, swept) -> None:
    (local, _), (remote, output) = swept, ray_swept
    cells = [(c.name, c.status, c.baseline_from, c.error) for c in read_sweep(local, NAME).cells]
    assert [(c.name, c.status, c.baseline_from, c.error) for c in read_sweep(remote, NAME).cells] == cells
    assert all(c.elapsed_s is not None and c.elapsed_s > 0 for c in read_sweep(remote, NAME).cells)
    lines = " ".join(output.split())
    assert f"done {LEADER} in" in lines and f"done {REUSER} in" in lines and f"(baseline from {LEADER})" in lines
    assert all(f"failed {name} after" in lines for name in FAILING)
    stages = remote.get_run(REUSER).manifest()["stages"]
    assert stages["baseline"]["reused_from"] == LEADER  # the follower ran after its leader had finished


def test_ray_executor_report_agrees_with_local_but_for_timings(ray_swept, swept, tmp_path: Path) -> None:
    (local, _), (remote, _) = swept, ray_swept
    tables = []
    for workspace, out in ((local, tmp_path / "local"), (remote, tmp_path / "ray")):
        result = invoke("report", NAME, "--workspace", workspace.root, "--out", out)
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader((out / "results.csv").open()))
        tables.append({(r["cell"], r["target"]): {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows})
    assert len(tables[0]) == 4 and tables[1] == tables[0]
