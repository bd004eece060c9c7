"""`edgeprune profiles`, `models` and `data generate`: what there is to choose from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import app, data_app, out, reporter, user_errors
from edgeprune.cli.render import print_models, print_profiles


@app.command()
@user_errors
def profiles(
    name: Annotated[str | None, typer.Argument(help="Show one profile (a name or a TOML file).")] = None,
) -> None:
    """List the hardware profiles, or show one.

    Examples:

      edgeprune profiles

      edgeprune profiles jetson-orin-nano
    """
    from edgeprune.profiles import list_profiles, load_profile, profile_to_toml

    if name:
        chosen = load_profile(name)
        out.print(f"# {chosen.source}" if chosen.source else "", highlight=False)
        out.print(profile_to_toml(chosen), highlight=False, markup=False)
        return
    print_profiles(list_profiles())


@app.command()
def models() -> None:
    """List the model aliases."""
    from edgeprune.models.registry import ALIASES

    print_models(ALIASES.values())


@data_app.command("generate")
@user_errors
def data_generate(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write it \\[default: the cache folder].")
    ] = None,
    images_per_class: Annotated[int, typer.Option(help="Images per class and domain.", min=1)] = 80,
    size: Annotated[int, typer.Option(help="Image side in pixels.", min=16)] = 64,
    seed: Annotated[int, typer.Option(help="Generator seed.", min=0)] = 0,
) -> None:
    """Write the built-in PACS-shaped data set (photo, art_painting, cartoon, sketch; 7 classes).

    Example:

      edgeprune data generate --out ./builtin-pacs --images-per-class 80
    """
    from edgeprune.data.builtin import default_builtin_root, generate_builtin

    root = out_dir or default_builtin_root()
    with reporter().task("generate", None) as advance:
        generate_builtin(
            root, images_per_class=images_per_class, size=size, seed=seed, progress=lambda done, total: advance(1)
        )
    out.print(f"built-in data set: {root}")
