"""`edgeprune latency-table`."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeprune.cli import prune_options as o
from edgeprune.cli.app import JsonOpt, WorkspaceOpt, app, plain, print_json, reporter, screen, user_errors, workspace_at
from edgeprune.cli.render import print_latency_table
from edgeprune.errors import EdgepruneError


@app.command("latency-table")
@user_errors
def latency_table(
    model: o.Model = None,
    profile: o.LatencyProfile = None,
    target: o.LatencyTarget = None,
    probes: Annotated[int, typer.Option(min=8, help="Probes over the width grid (a quarter held back).")] = 28,
    force: Annotated[bool, typer.Option("--force", help="Measure again, replacing the workspace's table.")] = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Measure how a model's latency depends on its widths on a profile's backend, batch and threads.

    Probe models (a few blocks at widths drawn from a grid of embedding, heads, head dim and MLP widths, and the
    fixed parts alone) are exported, built for the target and timed; a model linear in each op's work is fitted,
    its error measured on held-back probes, and the unpruned model is measured whole. `prune --target-latency` and
    `--target-speedup` read the table (and measure it first when the workspace has none). The table records what
    it was measured with, and a profile refuses a table measured for another target, batch, threads, backend
    version, CPU or fused attention operator.

    Examples:

      edgeprune latency-table --model deit-small --profile cpu-x86 --target ort-cpu

      edgeprune latency-table --model deit --profile jetson-orin-nano    (on the Jetson, with TensorRT)
    """
    if model is None:
        raise EdgepruneError("give --model (e.g. --model deit-small)")
    from edgeprune.models.registry import resolve_model
    from edgeprune.pipeline.latency import ensure_table, profile_and_target

    spec = resolve_model(model)
    chosen_profile, chosen_target = profile_and_target(profile, plain(target))
    table, path = ensure_table(
        spec, chosen_profile, chosen_target, workspace_at(workspace).root, reporter(), force=force, probes=probes
    )
    print_latency_table(screen(json_out), table, path)
    if json_out:
        print_json({"path": str(path), **table.to_json()})
