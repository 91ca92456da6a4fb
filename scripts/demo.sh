#!/usr/bin/env bash
# Set up the environment and run the demo: a phantom DCE study, the default model, a readable result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements.txt
exec .venv/bin/breastdceseg demo --output demo-output --overwrite "$@"
