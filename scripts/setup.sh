#!/usr/bin/env bash
# Create .venv/ in the repository root and install avct (+ test tools) from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
