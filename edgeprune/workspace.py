"""Run directories: where every stage writes its artifacts, the run manifest and the latest-run pointer.

Writes are atomic (temporary file or folder, then `os.replace`), so an interrupted command never leaves a
half-written artifact that a later command would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeprune import runlock
from edgeprune.errors import EdgepruneError

if TYPE_CHECKING:
    from edgeprune.results import BenchReport, BuildRecord, ParityReport, PruneReport, StageMetrics

DEFAULT_WORKSPACE = Path("edgeprune-runs")
LATEST_FILE = "LATEST"
MANIFEST_FILE = "run.json"
PRUNE_REPORT_FILE = "prune_report.json"
METRICS_FILE = "metrics.json"
PARITY_FILE = "parity.json"
BUILD_FILE = "build.json"
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def resolve_workspace(path: Path | None) -> Path:
    if path is not None:
        return path
    env = os.environ.get("EDGEPRUNE_WORKSPACE")
    return Path(env) if env else DEFAULT_WORKSPACE


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces `path` only when the block (which writes it) succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgepruneError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise EdgepruneError(f"{path} is not valid JSON ({exc}); delete it and re-run the step") from None


@contextlib.contextmanager
def atomic_dir(path: Path, *, already_published: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder that replaces `path` only when the block finishes without error.

    If the final swap fails, the previous `path` (a folder, a file or a dangling symlink) is put back, unless
    `already_published(path)` says a concurrent writer has just put the same result there, which is then kept.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    remove_path(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _swap_in(tmp, path, already_published)
    finally:
        remove_path(tmp)


def _swap_in(tmp: Path, path: Path, already_published: Callable[[Path], bool] | None) -> None:
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    remove_path(old)
    had_old = path.exists() or path.is_symlink()
    if had_old:  # move the previous version aside first: an interrupt never loses both
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        if already_published is not None and already_published(path):
            return
        if had_old and not (path.exists() or path.is_symlink()):
            os.replace(old, path)
        raise
    finally:
        remove_path(old)


def remove_path(path: Path) -> None:
    """Delete a folder tree, a file or a symlink (not what it points to); nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Run:
    """One run directory: `<workspace>/<name>/` with `run.json` and one folder per stage."""

    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST_FILE

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.manifest() if self.manifest_path.exists() else {}
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key].update(value)
            else:
                manifest[key] = value
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def status(self) -> str:
        """The manifest's status, with "running" told apart: "interrupted" when no process holds the run's lock
        (it was killed or crashed), else "running"."""
        status = str(self.manifest().get("status", "unknown"))
        if status == "running" and not runlock.is_held(self.dir):
            return "interrupted"
        return status

    def writing(self, command: str) -> contextlib.AbstractContextManager[None]:
        """Hold the run's lock while writing it (refused, naming the holder, while another process writes it)."""
        return runlock.holding(self.dir, command)

    def stage(self, name: str) -> Path:
        return self.dir / name

    def has_stage(self, name: str) -> bool:
        return (self.dir / name).is_dir()

    def require_stage(self, name: str, hint: str) -> Path:
        path = self.stage(name)
        if not path.is_dir():
            raise EdgepruneError(f"run '{self.name}' has no {name}/ stage yet: {hint}")
        return path

    # The stages' results, by name (the file layout of DESIGN.md stays in this class).

    def prune_report(self) -> PruneReport:
        from edgeprune.results import PruneReport

        return PruneReport.read(self.stage("pruned") / PRUNE_REPORT_FILE)

    def metrics(self, stage: str) -> StageMetrics:
        from edgeprune.results import StageMetrics

        return StageMetrics.read(self.stage(stage) / METRICS_FILE)

    def parity(self) -> ParityReport:
        from edgeprune.results import ParityReport

        return ParityReport.read(self.stage("export") / PARITY_FILE)

    def engine_dir(self, target: str) -> Path:
        return self.stage("engines") / target

    def build_record_path(self, target: str) -> Path:
        return self.engine_dir(target) / BUILD_FILE

    def build_record(self, target: str) -> BuildRecord:
        from edgeprune.results import BuildRecord

        return BuildRecord.read(self.build_record_path(target))

    def bench_path(self, target: str, domain: str, suffix: str = ".json") -> Path:
        return self.stage("bench") / f"{target}-{domain}{suffix}"

    def bench_report(self, target: str, domain: str) -> BenchReport:
        from edgeprune.results import BenchReport

        return BenchReport.read(self.bench_path(target, domain))

    def bench_reports(self) -> list[BenchReport]:
        from edgeprune.results import BenchReport

        return [BenchReport.read(p) for p in sorted(self.stage("bench").glob("*.json"))]


class Workspace:
    def __init__(self, root: Path):
        self.root = root

    def run_dir(self, name: str) -> Path:
        if not _RUN_NAME.match(name):
            raise EdgepruneError(
                f"invalid run name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        return self.root / name

    def ensure_writable(self) -> None:
        """Create the workspace folder, or say in one line why it cannot be (before any long work starts)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise EdgepruneError(
                f"cannot write the workspace {self.root}: {exc.strerror or exc}: give --workspace a folder you can "
                "write to"
            ) from None

    def create_run(self, name: str, manifest: dict[str, Any]) -> Run:
        path = self.run_dir(name)
        if path.is_dir() and not (path / MANIFEST_FILE).exists() and not any(path.iterdir()):
            path.rmdir()  # left empty by a command killed between creating the folder and writing run.json
        if path.exists():
            raise EdgepruneError(
                f"run '{name}' already exists in {self.root}: pick another --run name, or add --resume to continue it"
            )
        self.ensure_writable()
        path.mkdir(parents=True)
        run = Run(path)
        atomic_write_json(run.manifest_path, manifest)
        self.set_latest(run)
        return run

    def set_latest(self, run: Run) -> None:
        atomic_write_text(self.root / LATEST_FILE, run.name + "\n")

    def latest_name(self) -> str | None:
        pointer = self.root / LATEST_FILE
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    def get_run(self, name: str | None) -> Run:
        if name is None:
            name = self.latest_name()
            if name is None:
                raise EdgepruneError(
                    f"no run found in workspace {self.root}: run `edgeprune prune` (or `edgeprune demo`) first, "
                    "or point --workspace at the folder that holds your runs"
                )
        path = self.run_dir(name)
        if not (path / MANIFEST_FILE).exists():
            known = ", ".join(self.list_runs()) or "none"
            raise EdgepruneError(f"no run named '{name}' in workspace {self.root} (runs there: {known})")
        return Run(path)

    def latest_complete_name(self) -> str | None:
        """The complete run that finished last (None when there is none)."""
        finished = {}
        for name in self.list_runs():
            manifest = read_json(self.root / name / MANIFEST_FILE)
            if manifest.get("status") == "complete":
                finished[name] = manifest.get("finished") or manifest.get("created") or ""
        return max(finished, key=lambda n: (finished[n], n)) if finished else None

    def list_runs(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST_FILE).exists())
