"""`edgeprune profiles`, `models`, `runs` and `data generate`: what there is to choose from, and what was made."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from edgeprune.cli.app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    data_app,
    out,
    print_json,
    reporter,
    say,
    screen,
    user_errors,
    workspace_at,
)
from edgeprune.cli.choices import completer, profile_names
from edgeprune.cli.render import print_models, print_profiles, print_runs


@app.command()
@user_errors
def profiles(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Show one profile (a name or a TOML file), as TOML.", autocompletion=completer(profile_names)
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the hardware profiles, or show one (as TOML that `--profile FILE` reads back).

    Examples:

      edgeprune profiles

      edgeprune profiles jetson-orin-nano > my-jetson.toml

      edgeprune profiles --json
    """
    from edgeprune.profiles import list_profiles, load_profile, profile_to_json, profile_to_toml

    if name:
        chosen = load_profile(name)
        if json_out:
            print_json(profile_to_json(chosen))
        else:
            say(out, f"# {chosen.source}\n{profile_to_toml(chosen).rstrip()}")
        return
    found = list_profiles()
    print_profiles(screen(json_out), found)
    if json_out:
        print_json([profile_to_json(p) for p in found])


@app.command()
def models(json_out: JsonOpt = False) -> None:
    """List the model aliases (and the timm settings of the micro models)."""
    from edgeprune.models.registry import ALIASES

    print_models(screen(json_out), ALIASES.values())
    if json_out:
        print_json([dataclasses.asdict(spec) for spec in ALIASES.values()])


@app.command()
@user_errors
def runs(
    names: Annotated[list[str] | None, typer.Argument(help="Runs to show \\[default: every run].")] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """List the workspace's runs: status, setting, MACs kept and held-out accuracy after each stage.

    Examples:

      edgeprune runs

      edgeprune runs --workspace /data/edgeprune-runs --json
    """
    from edgeprune.runs import summarize_runs

    ws = workspace_at(workspace)
    summaries = summarize_runs(ws, names)
    print_runs(screen(json_out), ws.root, summaries)
    if json_out:
        print_json([s.to_json() for s in summaries])


@data_app.command("generate")
@user_errors
def data_generate(
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write it \\[default: the cache folder].")
    ] = None,
    images_per_class: Annotated[int, typer.Option(help="Images per class and domain.", min=1)] = 80,
    size: Annotated[int, typer.Option(help="Image side in pixels.", min=16)] = 64,
    seed: Annotated[int, typer.Option(help="Generator seed.", min=0)] = 0,
    json_out: JsonOpt = False,
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
    if json_out:
        print_json({"data": str(root)})
    else:
        say(out, f"built-in data set: {root}")
