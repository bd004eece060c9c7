#!/usr/bin/env bash
# Issue 14's chaos check: SIGKILL edgeprune (prune / export / bench on the built-in set) at seeded random moments,
# at least 20 times, and check after each that the next command continues correctly or refuses in one line, and
# that no half-written file is ever taken as valid. Options: --kills N --seed S --max-delay SECONDS --workspace DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/chaos.py "$@"
