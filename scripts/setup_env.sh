#!/usr/bin/env bash
# Creates (or reuses) .venv with the pinned dependencies and installs BreastDCESegLib in it.
#
# PyTorch is installed first and pinned, so nothing later pulls another build of it:
#   * by default the CPU build, from the PyTorch CPU wheel index
#     (https://download.pytorch.org/whl/cpu); only if that index cannot be reached is the
#     same pinned version taken from the default index (pip's own configuration);
#   * TORCH_INDEX_URL=<index> takes torch from that index instead (e.g. a CUDA one:
#     https://download.pytorch.org/whl/cu126).
# At the end the installed build is printed ("torch 2.13.0+cpu: CPU build"), and the script
# fails if a CUDA build got in although the CPU build was asked for.
#
# Usage: bash scripts/setup_env.sh [requirements file]     (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
REQS="${1:-requirements.txt}"
TORCH_PIN="torch==2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
WANT_INDEX="${TORCH_INDEX_URL:-$CPU_INDEX}"
case "$WANT_INDEX" in */cpu|*/cpu/) WANT_CPU=1 ;; *) WANT_CPU=0 ;; esac

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi

# The torch distribution's version without its local label (2.13.0+cpu -> 2.13.0), empty if absent.
installed_torch() {
  .venv/bin/python - <<'EOF'
from importlib import metadata
try:
    print(metadata.version("torch").split("+")[0])
except metadata.PackageNotFoundError:
    print("")
EOF
}

# True (exit 0) when the index answers within a few seconds.
index_reachable() {
  .venv/bin/python - "$1" <<'EOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=4)
except Exception as exc:  # DNS failure, timeout, HTTP error: not usable
    print(f"  {sys.argv[1]} is not reachable ({exc})", file=sys.stderr)
    sys.exit(1)
EOF
}

if [ "$(installed_torch)" = "${TORCH_PIN#torch==}" ]; then
  :  # the pinned version is there (its build is checked below); nothing to download
elif index_reachable "$WANT_INDEX"; then
  .venv/bin/pip install --quiet "$TORCH_PIN" --index-url "$WANT_INDEX"
elif [ -z "${TORCH_INDEX_URL:-}" ]; then
  echo "setup_env: the PyTorch CPU index cannot be reached; installing $TORCH_PIN from the default index" >&2
  .venv/bin/pip install --quiet "$TORCH_PIN"
else
  echo "setup_env: TORCH_INDEX_URL=$TORCH_INDEX_URL cannot be reached; nothing was installed" >&2
  exit 1
fi

.venv/bin/pip install --quiet -r "$REQS"
# The editable install builds with the environment's own setuptools when it is recent enough
# (no download, works offline); otherwise pip fetches one into an isolated build environment.
if .venv/bin/python -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null; then
  .venv/bin/pip install --quiet --no-deps --no-build-isolation -e .
else
  .venv/bin/pip install --quiet --no-deps -e .
fi

# Which torch build is installed: torch/version.py read on its own (importing torch takes seconds).
BUILD="$(.venv/bin/python - <<'EOF'
import importlib.util, runpy, os
spec = importlib.util.find_spec("torch")
version = runpy.run_path(os.path.join(spec.submodule_search_locations[0], "version.py"))
cuda = version.get("cuda")
print(f"torch {version['__version__']}: " + ("CPU build" if cuda is None else f"CUDA {cuda} build"))
EOF
)"
echo "setup_env: $BUILD" >&2
if [ "$WANT_CPU" = 1 ] && [ "${BUILD%CPU build}" = "$BUILD" ]; then
  echo "setup_env: ERROR: a CUDA build of torch is installed although the CPU build was asked for." >&2
  echo "  Remove it (.venv/bin/pip uninstall torch) and run again, or set TORCH_INDEX_URL to the CUDA index you want." >&2
  exit 1
fi
