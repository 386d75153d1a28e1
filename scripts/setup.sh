#!/usr/bin/env bash
# Create .venv and install rlhf-gym with everything its tests need. Idempotent and quick when done.
# PyTorch is pinned to the CPU build first so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import rlhf_gym, torch, gymnasium, stable_baselines3, fastapi" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[web,postgres,parquet,dev]"
fi
