"""The `edgeprune` command line: options -> request -> library call -> rendered result. The work is in
edgeprune.pipeline; what is printed is in `render`."""

from edgeprune.cli import engines, info, latency, prune, sweep  # noqa: F401  (each registers its commands)
from edgeprune.cli.app import EXIT_ERROR, EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_SOME_FAILED, app

__all__ = ["EXIT_ERROR", "EXIT_GATE_FAILED", "EXIT_INTERRUPTED", "EXIT_SOME_FAILED", "app"]
