#!/usr/bin/env bash
# Creates ./.venv with gleansr installed (editable) and its test extras, saying each step on one line.
# An existing torch (e.g. a CUDA build in the base Python) is reused, never replaced:
# the venv sees the base Python's packages, and torch is installed only when none imports.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
step() { printf 'setup: %s\n' "$*"; }
if [ ! -x .venv/bin/python ]; then
    step "creating .venv (seeing $PY's packages, so an installed torch is reused)"
    "$PY" -m venv --system-site-packages .venv
else
    step "using the existing .venv"
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    # 2.13.0 is the CPU wheel this project's machines hold locally; elsewhere pip fetches it.
    step "installing PyTorch 2.13.0 (no torch imports here; a download of about 200 MB-2 GB, minutes)"
    "$VPY" -m pip install -q "torch==2.13.0"
else
    step "PyTorch $("$VPY" -c "import torch; print(torch.__version__)") found, kept"
fi
step "installing gleansr (editable) with its test extras (pip, quiet; a minute or two on a fresh machine)"
"$VPY" -m pip install -q -e ".[test]"
step "done: .venv/bin/gleansr demo, or .venv/bin/python -m pytest -q"
