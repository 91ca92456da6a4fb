#!/usr/bin/env bash
# Mesa's EGL driver, which VTK (slicer-core wheel) loads at run time to render Slicer's views
# offscreen (Testing/test_render.py, test_report.py, `segment --report`, scripts/screenshots.py).
# The wheels bring VTK but not the system OpenGL libraries. Installs them with apt-get only when
# they are missing and only as root on a Debian/Ubuntu machine; elsewhere it says what is needed.
# Usage: bash scripts/install_render_libs.sh
set -euo pipefail
PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri"
# What VTK's EGL window loads at run time (LD_DEBUG=libs): libEGL.so.1 (glvnd), Mesa's EGL vendor
# library libEGL_mesa.so.0 and the software rasteriser dri/swrast_dri.so (llvmpipe).
have_libs() {
  ldconfig -p | grep -q 'libEGL\.so\.1 ' && ldconfig -p | grep -q 'libEGL_mesa\.so\.0 ' &&
    { compgen -G '/usr/lib*/*/dri/swrast_dri.so' >/dev/null || compgen -G '/usr/lib*/dri/swrast_dri.so' >/dev/null; }
}
if have_libs; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "installing Mesa EGL for offscreen rendering: $PACKAGES" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A failed install does not stop CI: the rendering tests then fail with what is missing.
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null; } || ! have_libs; then
    echo "warning: could not install $PACKAGES; the rendering tests will fail until Mesa EGL is there" >&2
  fi
else
  echo "warning: libEGL / Mesa EGL not found; install $PACKAGES (or your system's Mesa EGL) so that" \
       "the rendering tests can run" >&2
fi
