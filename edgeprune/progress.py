"""How long-running steps report progress: rich bars and messages on stderr, or nothing (tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[..., None]


class Reporter:
    """Silent base: the pipeline calls these; the CLI passes a `RichReporter`."""

    def info(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        yield lambda n=1, status=None: None


class RichReporter(Reporter):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def info(self, message: str) -> None:
        self.console.print(message)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        columns = [
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total, status="")

            def advance(n: int = 1, status: str | None = None) -> None:
                progress.update(task_id, advance=n, **({"status": status} if status is not None else {}))

            yield advance
