"""Right-after-pruning accuracy of several pruning configurations on one run's baseline, without fine-tuning.

Importance is computed once per metric and reused; each configuration is pruned from the same baseline and scored on
an even subset of the held-out domain and of the source validation split. For choosing defaults quickly; the full
pipeline (`edgeprune prune`) is what the reported tables use.

    python scripts/prune_ablation.py --workspace RUNS --run NAME --every 6 \
        --config "name=mean;normalization=mean" --config "name=cost;normalization=cost;compensate=1"

With a latency table, configurations may prune to a predicted latency (ms), ranked per ms or by importance alone:

    python scripts/prune_ablation.py --workspace RUNS --run NAME --latency-table TABLE.json \
        --config "name=per-ms;target_latency=15;compensate=1" \
        --config "name=importance;target_latency=15;latency_ranking=importance;compensate=1"
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch

from edgeprune.config import PruneConfig
from edgeprune.data.loaders import calibration_batches, data_config, eval_transform
from edgeprune.latency.table import LatencyTable
from edgeprune.latency.widths import model_widths
from edgeprune.models.artifact import load_model
from edgeprune.pipeline.context import RunData, eval_loader
from edgeprune.progress import Reporter
from edgeprune.prune import pruner
from edgeprune.prune.importance import scorer
from edgeprune.prune.pruner import prune_model
from edgeprune.train import accuracy, predict
from edgeprune.workspace import Workspace


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    values: dict[str, Any] = {}
    name = text
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if key == "name":
            name = value
        elif key in ("ratio", "target_macs", "target_params", "max_share", "target_latency"):
            values[key] = float(value)
        elif key in ("round_to",):
            values[key] = int(value)
        elif key in ("prune_heads", "compensate", "allow_narrow"):
            values[key] = value not in ("0", "false", "")
        else:
            values[key] = value
    return name, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--every", type=int, default=6, help="score every N-th held-out and validation image")
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--config", action="append", required=True, help="key=value;... (name=, PruneConfig fields)")
    parser.add_argument("--out", type=Path, help="append one JSON line per configuration here")
    parser.add_argument("--latency-table", type=Path, help="for configurations with target_latency=MS")
    args = parser.parse_args()
    table = LatencyTable.read(args.latency_table) if args.latency_table else None

    torch.set_num_threads(2)
    run = Workspace(args.workspace).get_run(args.run)
    data = RunData.from_manifest(run.manifest(), Reporter())
    baseline = load_model(run.stage("baseline"))
    test = data.split.test[:: args.every]
    val = data.split.val[:: max(1, args.every // 3)]
    batches = calibration_batches(
        data.split.train, eval_transform(data_config(baseline)), args.calib_batches, args.batch_size, seed=0
    )

    def score(model: torch.nn.Module) -> tuple[float, float]:
        held = accuracy(*predict(model, eval_loader(model, test), torch.device("cpu")))
        source = accuracy(*predict(model, eval_loader(model, val), torch.device("cpu")))
        return held, source

    cached: dict[str, dict[str, torch.Tensor]] = {}
    original_build = pruner.build_importance

    def cached_importance(metric: str, model: torch.nn.Module, calib: Any) -> Any:
        if metric not in cached:
            result = original_build(metric, model, calib)
            cached[metric] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            return result
        for k, p in model.named_parameters():
            p.grad = cached[metric].get(k)
        return scorer(metric)

    pruner.build_importance = cached_importance
    held, source = score(baseline)
    print(f"baseline: held-out {held:.4f}, source val {source:.4f} ({len(test)} / {len(val)} images)", flush=True)
    for text in args.config:
        name, values = parse_config(text)
        model = copy.deepcopy(baseline)
        start = time.perf_counter()
        report = prune_model(model, run.manifest()["model"]["timm_name"], PruneConfig(**values), batches, table)
        held, source = score(model)
        row = {
            "name": name,
            "config": values,
            "macs_kept": round(report.achieved.macs_kept, 4),
            "units_removed": round(report.achieved.units_removed, 4),
            **({"predicted_ms": round(table.predict_ms(model_widths(model)), 2)} if table else {}),
            "held_out": round(held, 4),
            "source_val": round(source, 4),
            "embed": report.blocks[0].after.embed_dim,
            "widths": [(b.after.heads, b.after.head_dim, b.after.mlp_hidden) for b in report.blocks],
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
