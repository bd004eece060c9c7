"""Kill edgeprune with SIGKILL at random moments and check that it always recovers (scripts/chaos.sh runs this).

One run on the built-in data set goes through prune -> export -> bench again and again. Each round starts the next
command, kills it with SIGKILL after a random delay (seeded), then runs the command that should recover
(`prune --resume`, or the same export / bench) to the end. After every recovery the run folder is checked: every
JSON file parses, every stage's model matches the hash in run.json, every engine matches its build record, every
bench report parses; nothing half-written is taken as valid. A recovery may also refuse, in one line, without a
traceback. Prints one line per kill and a summary; exits 1 on the first violation.

    scripts/chaos.sh [--kills 20] [--seed 0] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeprune.results import BenchReport, BuildRecord
from edgeprune.workspace import MANIFEST_FILE, Run, file_sha256

RUN = "chaos"
PRUNE = [
    "prune", "--model", "vit-micro", "--random-init", "--metric", "l2", "--ratio", "0.5", "--baseline-epochs", "1",
    "--epochs", "1", "--max-steps-per-epoch", "6", "--batch-size", "16", "--calib-batches", "1", "--workers", "0",
    "--eval-images", "32", "--run", RUN,
]  # fmt: skip
EXPORT = ["export", "--target", "ort-cpu", "--run", RUN, "--parity-images", "16"]
BENCH = ["bench", "--target", "ort-cpu", "--run", RUN, "--iterations", "5", "--warmup", "1", "--max-images", "32"]


def edgeprune(args: list[str], workspace: Path) -> list[str]:
    return [sys.executable, "-m", "edgeprune", *args, "--workspace", str(workspace)]


def next_step(run_dir: Path) -> tuple[str, list[str]]:
    """What the run needs next: a new prune, a resumed one, an export, or a bench."""
    if not (run_dir / MANIFEST_FILE).exists():
        return "prune", PRUNE
    if Run(run_dir).manifest().get("status") != "complete":
        return "prune --resume", ["prune", "--resume", "--run", RUN]
    if not (run_dir / "engines" / "ort-cpu" / "build.json").exists():
        return "export", EXPORT
    return "bench", BENCH


def check_run(run_dir: Path) -> list[str]:
    """Every artifact in the run that a later command would accept must be whole and match its record."""
    problems = []
    if run_dir.exists() and not (run_dir / MANIFEST_FILE).exists() and any(run_dir.iterdir()):
        problems.append("run folder without run.json holds files")
    for path in run_dir.rglob("*.json"):
        if not path.name.startswith("."):
            try:
                json.loads(path.read_text())
            except ValueError:
                problems.append(f"half-written JSON {path.relative_to(run_dir)}")
    if not (run_dir / MANIFEST_FILE).exists():
        return problems
    run = Run(run_dir)
    for stage, record in run.manifest().get("stages", {}).items():
        weights = run.stage(stage) / "model.safetensors"
        if file_sha256(weights) != record["model_sha256"]:
            problems.append(f"{stage} weights do not match run.json")
    build_path = run.build_record_path("ort-cpu")
    if build_path.exists():
        for name, engine in BuildRecord.read(build_path).engines.items():
            if file_sha256(run.dir / engine.path) != engine.sha256:
                problems.append(f"engine {name} does not match build.json")
    for path in run.stage("bench").glob("*.json") if run.stage("bench").is_dir() else []:
        BenchReport.read(path)
    return problems


def recover(label: str, args: list[str], workspace: Path) -> tuple[str, str]:
    """Run the recovering command to its end: ('ok', '') or ('refused', its one line)."""
    done = subprocess.run(edgeprune(args, workspace), capture_output=True, text=True, timeout=1800)
    output = done.stdout + done.stderr
    if done.returncode == 0 or (label == "bench" and done.returncode == 3):  # 3: the gate's verdict, not an error
        return "ok", ""
    if "Traceback" in output:
        raise SystemExit(f"VIOLATION: {label} after a kill ended in a traceback:\n{output[-2000:]}")
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    if done.returncode != 2 or not errors:
        raise SystemExit(f"VIOLATION: {label} after a kill exited {done.returncode} without a one-line error")
    return "refused", errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=25.0, help="seconds: kills land in [0.5, this]")
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="edgeprune-chaos-"))
    rng = random.Random(args.seed)
    run_dir = workspace / RUN
    kills = refusals = cycles = 0
    start = time.perf_counter()
    while kills < args.kills:
        label, command = next_step(run_dir)
        delay = rng.uniform(0.5, args.max_delay)
        proc = subprocess.Popen(edgeprune(command, workspace), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            finished = True
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            finished = False
        if finished:  # it ended before the kill: the next step (or a new cycle) gets the next kill
            if label == "bench":
                cycles += 1
                shutil.rmtree(run_dir)
            continue
        kills += 1
        recovering, recovery = next_step(run_dir)
        outcome, line = recover(recovering, recovery, workspace)
        refusals += outcome == "refused"
        problems = check_run(run_dir)
        status = "; ".join(problems) or "run folder consistent"
        print(f"kill {kills:2d}: {label} killed after {delay:4.1f} s -> {outcome} {line} ({status})", flush=True)
        if problems:
            raise SystemExit(f"VIOLATION after kill {kills}: {status}")
        if recovering == "bench" and outcome == "ok":  # the run is whole: the next kills hit a new one
            cycles += 1
            shutil.rmtree(run_dir)
    elapsed = time.perf_counter() - start
    print(
        f"{kills} kills (seed {args.seed}), {refusals} recoveries refused in one line, {cycles} full cycles, "
        f"0 half-written files accepted; {elapsed:.0f} s; workspace {workspace}"
    )


if __name__ == "__main__":
    main()
