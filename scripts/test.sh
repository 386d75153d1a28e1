#!/usr/bin/env bash
# The test command: lint, then the fast test suite (long benchmarks are marked slow and left out).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -m "not slow" -q -p no:cacheprovider "$@"
