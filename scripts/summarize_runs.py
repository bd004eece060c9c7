"""One markdown table over the finished runs of a workspace (for the README's results): MACs and params kept, and
held-out / source-validation accuracy of each stage. `edgeprune runs` shows the same summaries (and `--json`).

    python scripts/summarize_runs.py /tmp/pacs-ws --runs metric-l1-r0.5 metric-l2-r0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeprune.runs import RunSummary, summarize_runs
from edgeprune.workspace import Workspace

HEADER = (
    "| run | metric | amount | GMACs (kept) | params M (kept) | held-out acc: baseline | after pruning "
    "| after fine-tune | source val acc after fine-tune | fine-tune steps |\n|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_row(s: RunSummary) -> str:
    assert s.macs is not None and s.params is not None  # finished runs only
    acc = s.held_out_accuracy
    steps = s.max_steps_per_epoch or "full"
    source_val = s.source_val_accuracy["finetuned"]
    return (
        f"| {s.name} | {s.metric} | {s.amount} | {s.macs.after / 1e9:.3f} ({s.macs.kept:.0%}) "
        f"| {s.params.after / 1e6:.2f} ({s.params.kept:.0%}) | {acc['baseline']:.4f} | {acc['pruned']:.4f} "
        f"| {acc['finetuned']:.4f} | {'n/a' if source_val is None else f'{source_val:.4f}'} | {s.epochs} x {steps} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--runs", nargs="*", help="run names [default: every finished run]")
    args = parser.parse_args()
    print(HEADER)
    for summary in summarize_runs(Workspace(args.workspace), args.runs):
        if "finetuned" in summary.held_out_accuracy:
            print(markdown_row(summary))


if __name__ == "__main__":
    main()
