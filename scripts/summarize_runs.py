"""One markdown table over the runs of a workspace: MACs and params (recounted from the saved models), and
source-validation / held-out accuracy of each stage, from each stage's metrics.

    python scripts/summarize_runs.py /tmp/pacs-ws --runs metric-l1-r0.5 metric-l2-r0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeprune.models.artifact import load_model
from edgeprune.prune.counting import count_macs, count_params
from edgeprune.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--runs", nargs="*", help="run names [default: every complete run]")
    args = parser.parse_args()
    workspace = Workspace(args.workspace)
    names = args.runs or workspace.list_runs()
    print(
        "| run | metric | ratio | GMACs (kept) | params M (kept) | held-out acc: baseline | after pruning "
        "| after fine-tune | source val acc after fine-tune | fine-tune steps |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        run = workspace.get_run(name)
        if not all(run.has_stage(s) for s in ("baseline", "pruned", "finetuned")):
            continue
        report = run.prune_report()
        metrics = {s: run.metrics(s) for s in ("baseline", "pruned", "finetuned")}
        base, pruned = load_model(run.stage("baseline")), load_model(run.stage("finetuned"))
        macs, base_macs = count_macs(pruned), count_macs(base)
        params, base_params = count_params(pruned), count_params(base)
        request = run.manifest()["request"]
        steps = request.get("max_steps_per_epoch") or "full"
        print(
            f"| {name} | {report.metric} | {report.ratio:.3g} | {macs / 1e9:.3f} ({macs / base_macs:.0%}) "
            f"| {params / 1e6:.2f} ({params / base_params:.0%}) | {metrics['baseline'].held_out_accuracy:.4f} "
            f"| {metrics['pruned'].held_out_accuracy:.4f} | {metrics['finetuned'].held_out_accuracy:.4f} "
            f"| {metrics['finetuned'].source_val_accuracy:.4f} | {request['epochs']} x {steps} |"
        )


if __name__ == "__main__":
    main()
