#!/usr/bin/env bash
# Creates (or reuses) .venv with the pinned dependencies and installs BreastDCESegLib in it.
# torch is installed first and pinned, so nothing later pulls another build of it.
# Set TORCH_INDEX_URL (e.g. the PyTorch CPU wheel index) to choose where torch comes from.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
REQS="${1:-requirements.txt}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  .venv/bin/pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX_URL"
else
  .venv/bin/pip install --quiet torch==2.13.0
fi
.venv/bin/pip install --quiet -r "$REQS"
.venv/bin/pip install --quiet --no-deps -e .
