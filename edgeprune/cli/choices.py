"""What the shell completes and `--help` lists beyond the enum choices of `app`: hardware profiles (a name or a
TOML file), model aliases and the comma lists of `sweep`. Cheap: no torch is imported and no file is read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from edgeprune.config import METRICS
from edgeprune.errors import EdgepruneError
from edgeprune.targets import TARGETS


def profile_names() -> list[str]:
    from edgeprune.profiles import profile_names

    return profile_names()


def model_aliases() -> list[str]:
    from edgeprune.models.registry import ALIASES

    return list(ALIASES)


def completer(choices: Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """Completes a value, or the last item of a comma list (`hessian,l` -> `hessian,l1`, `hessian,l2`)."""

    def complete(incomplete: str) -> list[str]:
        done, comma, last = incomplete.rpartition(",")
        return [done + comma + choice for choice in choices() if choice.startswith(last)]

    return complete


def check_profile(value: str | None) -> str | None:
    """A profile name, or a file that exists (read and checked where it is used)."""
    if value is not None:
        from edgeprune.profiles import find_profile

        try:
            find_profile(value)
        except EdgepruneError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


def profile_option(what: str) -> Any:
    """`--profile`: a name (listed in the help, completed by the shell) or a TOML file; `what` ends the help."""
    return Annotated[
        str | None,
        typer.Option(
            help=f"Hardware profile ({', '.join(profile_names())}) or a TOML file: {what}",
            autocompletion=completer(profile_names),
            callback=check_profile,
        ),
    ]


complete_models = completer(model_aliases)
complete_metrics = completer(lambda: METRICS)
complete_targets = completer(lambda: TARGETS)
