"""`edgeprune sweep` and `edgeprune report`: a grid of runs, and its tables, Pareto plot and recommendation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeprune.cli.app import (
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    JsonOpt,
    WorkspaceOpt,
    app,
    err,
    out,
    print_json,
    say,
    screen,
    user_errors,
    workspace_at,
)
from edgeprune.cli.choices import complete_metrics, complete_models, complete_targets, profile_option
from edgeprune.cli.render import print_table
from edgeprune.config import METRICS
from edgeprune.errors import EdgepruneError
from edgeprune.progress import Advance, Reporter
from edgeprune.sweep.record import CellRecord, SweepRecord
from edgeprune.sweep.runner import SweepListener
from edgeprune.sweep.spec import PRUNE_TABLE_KEYS, SweepSpec
from edgeprune.targets import TARGETS

_D = SweepSpec.model_fields  # the defaults, declared once in the spec


def _default(key: str) -> str:
    value = _D[key].default
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _list_opt(flag: str, what: str, complete: Callable[[str], list[str]] | None = None) -> Any:
    key = flag.lstrip("-").replace("-", "_")
    shown = "" if _D[key].is_required() or not _default(key) or key == "ratios" else f" \\[default: {_default(key)}]"
    help_text = f"{what}: comma list or repeated flag{shown}."
    return Annotated[list[str] | None, typer.Option(flag, help=help_text, autocompletion=complete)]


Models = _list_opt("--models", "Model aliases (`edgeprune models`) or timm names", complete_models)
Metrics = _list_opt("--metrics", f"Importance metrics ({', '.join(METRICS)})", complete_metrics)
Ratios = _list_opt("--ratios", "Fractions of units to remove \\[default: 0.5 unless --target-macs]")
TargetMacs = _list_opt("--target-macs", "Fractions of MACs to keep (cells besides --ratios)")
Domains = _list_opt("--domains", "Held-out domains, each in turn; 'all' = every domain of the data set")
Seeds = _list_opt("--seeds", "Seeds (split, sampling, training)")
Targets = _list_opt("--targets", f"Engines to export and benchmark per cell ({', '.join(TARGETS)})", complete_targets)
SweepProfileOpt = profile_option("for export, bench and the budget.")
ExecutorOpt = Annotated[
    str,
    typer.Option(
        help="Where cells run: local (one after another, here) or ray (in parallel, one Ray task per cell; the "
        "workspace must be on a path every node sees). Example: --executor ray --address auto."
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="With --executor ray: the Ray cluster, auto (the one this node is in) or HOST:PORT "
        "\\[default: start a local Ray]. Example: --address 10.0.0.5:6379."
    ),
]
CpusPerCellOpt = Annotated[
    float | None,
    typer.Option(help="With --executor ray: CPUs each cell asks Ray for \\[default: 1]. Example: --cpus-per-cell 4."),
]


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _numbers(values: list[str] | None, kind: type, flag: str) -> list[Any] | None:
    try:
        return None if values is None else [kind(v) for v in _split(values) or []]
    except ValueError:
        raise EdgepruneError(
            f"{flag} takes {kind.__name__} values, comma-separated (got {', '.join(values)})"
        ) from None


def _prune_settings(values: list[str] | None) -> dict[str, Any] | None:
    """--set key=value (TOML values: 5e-4, true, "text") for the [prune] table."""
    from edgeprune.sweep.spec import tomllib

    if not values:
        return None
    found = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EdgepruneError(f"--set takes key=value (got {item!r}); keys: {', '.join(PRUNE_TABLE_KEYS)}")
        try:
            found[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            found[key.strip()] = value.strip()
    return found


class _CellReporter(Reporter):
    """The pipeline's progress inside a cell, shown as the sweep bar's status (messages only with --verbose)."""

    def __init__(self, listener: _ProgressListener):
        self.listener = listener

    def info(self, message: str) -> None:
        if self.listener.verbose:
            self.listener.console.print(f"  [dim]{message}[/]")

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        done = 0

        def advance(n: int = 1, status: str | None = None) -> None:
            nonlocal done
            done += n
            self.listener.status(f"{description} {done}/{total}" if total else description)

        self.listener.status(description)
        yield advance


class _ProgressListener(SweepListener):
    """An overall bar, and one line per finished cell."""

    def __init__(self, console: Console, verbose: bool):
        self.console, self.verbose = console, verbose
        self.progress = Progress(
            TextColumn("[bold blue]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"), console=console, transient=True,
        )  # fmt: skip
        self.task: Any = None
        self.cell = ""

    def planned(self, record: SweepRecord, todo: Sequence[CellRecord]) -> None:
        counts = record.counts()
        skipped = f", {counts['done']} done already" if counts["done"] else ""
        failed = sum(c.status == "failed" for c in record.cells if c not in todo)
        retry = f", {failed} failed left as they are (--retry-failed reruns them)" if failed else ""
        self.console.print(f"sweep {record.name}: {len(record.cells)} cells{skipped}{retry}, {len(todo)} to run")
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=len(todo), status="")

    def status(self, text: str) -> None:
        if self.task is not None:  # before planning (the data set is being generated), there is no bar yet
            self.progress.update(self.task, status=f"{self.cell}: {text}")

    def started(self, cell: CellRecord) -> None:
        self.cell = cell.name
        self.status("starting")

    def finished(self, cell: CellRecord) -> None:
        if cell.status == "done":
            reused = f" (baseline from {cell.baseline_from})" if cell.baseline_from else ""
            self.console.print(f"[green]done[/]   {cell.name} in {cell.elapsed_s:.0f} s{reused}", highlight=False)
        else:
            self.console.print(
                f"[red]failed[/] {cell.name} after {cell.elapsed_s:.0f} s: {cell.error}", highlight=False
            )
        self.progress.update(self.task, advance=1)

    def cell_reporter(self) -> Reporter:
        return _CellReporter(self)

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()


def _overrides(**options: Any) -> dict[str, Any]:
    """The flags given, as spec keys (None: not given, the spec file or the default decides)."""
    found = dict(options)
    for key in ("models", "metrics", "domains", "targets"):
        found[key] = _split(found[key])
    found["ratios"] = _numbers(found["ratios"], float, "--ratios")
    found["target_macs"] = _numbers(found["target_macs"], float, "--target-macs")
    found["seeds"] = _numbers(found["seeds"], int, "--seeds")
    found["data"] = str(found["data"]) if found["data"] is not None else None
    found["random_init"] = True if found["random_init"] else None
    return found


@app.command()
@user_errors
def sweep(
    spec: Annotated[Path | None, typer.Argument(help="A TOML file with the same keys as the flags.")] = None,
    models: Models = None,
    metrics: Metrics = None,
    ratios: Ratios = None,
    target_macs: TargetMacs = None,
    domains: Domains = None,
    seeds: Seeds = None,
    targets: Targets = None,
    profile: SweepProfileOpt = None,
    data: Annotated[Path | None, typer.Option(help="DG data set \\[default: the built-in data set].")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Start every model from random weights.")] = False,
    baseline_epochs: Annotated[
        int | None,
        typer.Option(min=0, help="Baseline fine-tune epochs \\[default: --epochs when the classifier is new, else 0]."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=0, help="Fine-tune epochs after pruning \\[default: 1].")] = None,
    max_steps_per_epoch: Annotated[int | None, typer.Option(min=1, help="Cap training steps per epoch.")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data-loading workers per cell \\[default: 2].")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Another prune option for every cell, key=value (lr=5e-4, batch_size=16, ...)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Sweep name \\[default: the spec file's name, else a hash].")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    cpus_per_cell: CpusPerCellOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the pipeline's messages.")] = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run a grid of prune -> export -> bench runs, one baseline per (model, held-out domain, seed), resumably.

    Each cell is an ordinary run named <sweep>-<model>-<metric>-<amount>-<domain>-s<seed>.

    The record is <workspace>/sweeps/<name>/sweep.json. Run the same command again to continue: done cells are
    skipped, an interrupted cell resumes from its finished stages, failed cells run again with --retry-failed.

    A TOML spec takes the flags' keys (models = ["deit-tiny"], ratios = [0.5, 0.75], epochs = 1, ...) and a
    [prune] table of other prune options; flags override it. Exit 1 when a cell failed.

    Examples:

      edgeprune sweep --models vit-micro --random-init --metrics hessian,l1 --ratios 0.3,0.5 --domains sketch

      edgeprune sweep --models deit-tiny --metrics hessian,l2 --ratios 0.5,0.75 --domains all --data PACS \\
        --baseline-epochs 1 --epochs 1 --seeds 0,1 --targets ort-cpu,ort-cpu-int8 --profile cpu-x86

      edgeprune sweep paper.toml --retry-failed
    """
    overrides = _overrides(**{k: v for k, v in locals().items() if k in SweepSpec.model_fields})
    overrides["prune"] = _prune_settings(set_)
    from edgeprune.sweep import load_spec

    sweep_spec = load_spec(spec, overrides)
    chosen = _executor(executor, address, cpus_per_cell)
    _run(sweep_spec, workspace_at(workspace), chosen, verbose, retry_failed, json_out)


def _executor(name: str, address: str | None, cpus_per_cell: float | None) -> Any:
    """The executor, made with the options given (--address and --cpus-per-cell are Ray's)."""
    from edgeprune.sweep.executor import EXECUTORS

    if name not in EXECUTORS:
        raise EdgepruneError(f"unknown --executor '{name}': choose one of {', '.join(EXECUTORS)}")
    options = {"address": address, "cpus_per_cell": cpus_per_cell}
    given = {key: value for key, value in options.items() if value is not None}
    if given and name != "ray":
        flags = ", ".join(f"--{key.replace('_', '-')}" for key in given)
        raise EdgepruneError(f"{flags}: only with --executor ray")
    return EXECUTORS[name](**given)


def _run(spec: SweepSpec, ws: Any, executor: Any, verbose: bool, retry_failed: bool, json_out: bool) -> None:
    from edgeprune.sweep.runner import run_sweep

    listener = _ProgressListener(err, verbose)
    start = time.perf_counter()
    try:
        try:
            record = run_sweep(spec, ws, executor=executor, listener=listener, retry_failed=retry_failed)
        finally:
            listener.close()
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: run the same command again to continue sweep {spec.name}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    _print_sweep_end(record, ws, time.perf_counter() - start, json_out)


def _print_sweep_end(record: SweepRecord, ws: Any, seconds: float, json_out: bool) -> None:
    from edgeprune.sweep.record import sweep_file

    counts = record.counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    say(err, f"sweep {record.name}: {summary} ({seconds:.0f} s); record: {sweep_file(ws, record.name)}")
    if json_out:
        print_json(record.model_dump(mode="json"))
    else:
        from edgeprune.workspace import resolve_workspace

        where = "" if ws.root == resolve_workspace(None) else f" --workspace {ws.root}"
        say(out, f"next: edgeprune report {record.name}{where}")
    if counts["failed"]:
        err.print(f"[red]{counts['failed']} cell(s) failed[/]: see sweep.json; --retry-failed runs them again")
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command()
@user_errors
def report(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="A sweep's name or folder, or run names \\[default: the latest sweep]."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write \\[default: the sweep's folder].")
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Tables in the paper's layout, a Pareto plot and a recommendation for a sweep (or for runs).

    Writes results.csv, results.json (one row per cell and target), report.md, pareto.png and pareto.json next to
    the sweep. The recommendation is the best source-validation accuracy within the profile's latency budget:
    held-out accuracy is reported, never selected on.

    Examples:

      edgeprune report my-sweep

      edgeprune report edgeprune-runs/sweeps/my-sweep --json

      edgeprune report run-a run-b --out ./compare
    """
    from edgeprune.report import build_report

    result = build_report(workspace_at(workspace), names or [], out_dir)
    console = screen(json_out)
    for summary in result.summaries:
        if summary.points:
            print_table(console, _points_table(summary))
    say(console, f"{result.title}: {len(result.rows)} rows; wrote {', '.join(p.name for p in result.files)} to "
                 f"{result.out_dir}")  # fmt: skip
    for line in result.recommendations() or ["nothing measured yet: run the sweep first"]:
        console.print(f"[bold]recommendation[/] {escape(line)}", highlight=False)
    if json_out:
        print_json(result.to_json())


def _points_table(summary: Any) -> Table:
    table = Table(title=f"{summary.target}: means over held-out domains and seeds; * = on the frontier")
    for column in ("", "setting", "held-out", "src val", "p50 ms", "speed-up", "cells"):
        table.add_column(column, justify="left" if column in ("", "setting") else "right", no_wrap=True)
    one_model = len({p.model for p in summary.points}) == 1
    for p in sorted(summary.points, key=lambda p: p.p50_ms):
        table.add_row(
            "[bold red]deploy[/]" if p is summary.recommended else "",
            (p.short if one_model else p.label) + (" *" if p in summary.front else ""), f"{p.held_out:.4f}",
            "n/a" if p.source_val is None else f"{p.source_val:.4f}", f"{p.p50_ms:.3f}",
            "n/a" if p.speedup is None else f"{p.speedup:.2f}x", f"{len(p.cells)}/{p.expected_cells}",
        )  # fmt: skip
    return table
