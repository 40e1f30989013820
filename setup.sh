#!/usr/bin/env bash
# Creates ./.venv with gleansr installed (editable) and its test extras.
# An existing torch (e.g. a CUDA build in the base Python) is reused, never replaced:
# the venv sees the base Python's packages, and torch is installed only when none imports.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv --system-site-packages .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    # 2.13.0 is the CPU wheel this project's machines hold locally; elsewhere pip fetches it.
    "$VPY" -m pip install -q "torch==2.13.0"
fi
"$VPY" -m pip install -q -e ".[test]"
