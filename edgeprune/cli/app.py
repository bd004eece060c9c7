"""The Typer application, its consoles and exit codes, and what every command shares (errors, workspace, options)."""

from __future__ import annotations

import enum
import errno
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edgeprune.config import AUGMENTATIONS, COMPENSATIONS, LATENCY_RANKINGS, METRICS, NORMALIZATIONS
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


class _Console(Console):
    """A rich console that wraps text at a terminal's width, and never when piped: a path, a command or an error
    message written to a file or a pipe stays on its line (tables still fit the width: see `render.print_table`)."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **options: Any) -> None:
        super().print(*objects, soft_wrap=not self.is_terminal if soft_wrap is None else soft_wrap, **options)


out = _Console()
err = _Console(stderr=True)
EXIT_SOME_FAILED = 1  # a sweep cell, or a bench target, failed; the others were done
EXIT_ERROR = 2
EXIT_GATE_FAILED = 3
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

# Choices that --help lists and the shell completes, declared where the library declares them.
Metric = enum.Enum("Metric", {m: m for m in METRICS}, type=str)
Normalization = enum.Enum("Normalization", {n: n for n in NORMALIZATIONS}, type=str)
Compensation = enum.Enum("Compensation", {c: c for c in COMPENSATIONS}, type=str)
Augmentation = enum.Enum("Augmentation", {a: a for a in AUGMENTATIONS}, type=str)
LatencyRanking = enum.Enum("LatencyRanking", {r.replace("-", "_"): r for r in LATENCY_RANKINGS}, type=str)
TargetName = enum.Enum("TargetName", {t.replace("-", "_"): t for t in TARGETS}, type=str)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Folder of runs \\[default: $EDGEPRUNE_WORKSPACE or ./edgeprune-runs]."),
]
DataOpt = Annotated[
    Path | None, typer.Option(help="The run's data set, if it now lives elsewhere than when the run was made.")
]
RunOpt = Annotated[str | None, typer.Option("--run", help="Run name \\[default: the latest run].")]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print the result as one JSON document on stdout; tables and progress go to stderr."),
]


def _print_version(value: bool) -> None:
    if value:
        from edgeprune import __version__

        print(f"edgeprune {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """--version acts on its own; under torchrun only `prune` runs (one command per process group)."""
    rank = _torchrun_rank()
    if rank is not None and ctx.invoked_subcommand != "prune":
        if rank == 0:
            err.print(f"[bold red]error:[/] only `edgeprune prune` runs under torchrun, not `{ctx.invoked_subcommand}`")
        raise typer.Exit(EXIT_ERROR)


def screen(json_out: bool) -> Console:
    """Where a command's tables and messages go: stdout, or stderr when stdout holds its JSON result."""
    return err if json_out else out


def print_json(data: Any) -> None:
    """A command's result, alone on stdout as one JSON document."""
    print(json.dumps(data, indent=2))


def say(console: Console, text: str) -> None:
    """Text as it is (a path, a command, a TOML file): no markup, highlighting or wrapping."""
    print(text, file=console.file, flush=True)


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


_USER_FIXABLE = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def _os_error_line(exc: OSError) -> str:
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk{where}: free some or use another --workspace (nothing half-written is kept)"
    return f"{exc.strerror}{where}: use a folder you can write to (--workspace)"


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several (None otherwise); read without importing torch."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return int(os.environ.get("RANK", "0") or 0)


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
        except OSError as exc:
            if exc.errno not in _USER_FIXABLE:
                raise
            err.print(f"[bold red]error:[/] {escape(_os_error_line(exc))}", highlight=False)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def workspace_at(path: Path | None) -> Any:
    from edgeprune.workspace import Workspace, resolve_workspace

    return Workspace(resolve_workspace(path))


def reporter() -> Any:
    from edgeprune.progress import RichReporter

    return RichReporter(err)
