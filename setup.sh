#!/usr/bin/env bash
# Creates ./.venv with genrl and everything the tests and the CPU demo need.
# torch is pinned to the build that open-clip-torch's torchvision needs; nothing else may replace it.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[rewards,dev,robot]" "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -c "import torch, genrl, rewards, samplers; print('genrl', genrl.__version__, 'torch', torch.__version__)"
