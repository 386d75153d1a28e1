#!/usr/bin/env bash
# Create .venv and install rlhf-gym with everything its tests need. Idempotent and quick when done:
# it reinstalls only when pyproject.toml changed since the last install.
# PyTorch is pinned to the CPU build first so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# every optional part the test suite exercises (a user installs only the extras they need)
EXTRAS="${RLHF_GYM_EXTRAS:-web,postgres,parquet,dev,box2d,atari,morl,minari,sweep,mujoco,minatar}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.rlhf-gym-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c "import rlhf_gym, torch, gymnasium, stable_baselines3, fastapi" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi
