"""The Typer application, its consoles and exit codes, and what every command shares (errors, workspace, options)."""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edgeprune.config import METRICS, NORMALIZATIONS
from edgeprune.errors import EdgepruneError, RankFailed
from edgeprune.targets import TARGETS

app = typer.Typer(
    help="Prune vision transformers with grouped structural global pruning, export them to ONNX engines, and "
    "benchmark latency and held-out-domain accuracy.\n\n"
    "Example: edgeprune demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


data_app = typer.Typer(help="The built-in data set.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)
EXIT_ERROR = 2
EXIT_GATE_FAILED = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

# Choices that --help lists and the shell completes, declared where the library declares them.
Metric = enum.Enum("Metric", {m: m for m in METRICS}, type=str)
Normalization = enum.Enum("Normalization", {n: n for n in NORMALIZATIONS}, type=str)
TargetName = enum.Enum("TargetName", {t.replace("-", "_"): t for t in TARGETS}, type=str)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Folder of runs \\[default: $EDGEPRUNE_WORKSPACE or ./edgeprune-runs]."),
]
DataOpt = Annotated[
    Path | None, typer.Option(help="The run's data set, if it now lives elsewhere than when the run was made.")
]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run name \\[default: the latest run].")]


def open_range(low: float, high: float) -> Callable[[float | None], float | None]:
    """An option callback that accepts values strictly between `low` and `high` (or no value)."""

    def check(value: float | None) -> float | None:
        if value is not None and not low < value < high:
            raise typer.BadParameter(f"must be strictly between {low:g} and {high:g} (got {value:g})")
        return value

    return check


def plain(value: Any) -> Any:
    """An option's value as the library takes it (an enum choice as its string)."""
    return value.value if isinstance(value, enum.Enum) else value


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several (None otherwise); read without importing torch."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return int(os.environ.get("RANK", "0") or 0)


@app.callback()
def _one_process_unless_prune(ctx: typer.Context) -> None:
    rank = _torchrun_rank()
    if rank is not None and ctx.invoked_subcommand != "prune":
        if rank == 0:
            err.print(f"[bold red]error:[/] only `edgeprune prune` runs under torchrun, not `{ctx.invoked_subcommand}`")
        raise typer.Exit(EXIT_ERROR)


def user_errors(func: F) -> F:
    """One line and a non-zero exit for errors the user can fix; never a traceback.

    Under torchrun, rank 0 reports; another process names its rank, and says nothing when rank 0 failed first.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rank = _torchrun_rank()
        try:
            return func(*args, **kwargs)
        except RankFailed:
            raise typer.Exit(EXIT_ERROR) from None
        except EdgepruneError as exc:
            where = f"rank {rank}: " if rank else ""
            err.print(f"[bold red]error:[/] {where}{escape(str(exc))}", highlight=False)  # the text, not markup
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            if not rank:
                err.print(
                    "[yellow]interrupted[/]: finished stages are kept; `edgeprune prune --resume` continues a run"
                )
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def workspace_at(path: Path | None) -> Any:
    from edgeprune.workspace import Workspace, resolve_workspace

    return Workspace(resolve_workspace(path))


def reporter() -> Any:
    from edgeprune.progress import RichReporter

    return RichReporter(err)
