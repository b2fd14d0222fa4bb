#!/usr/bin/env bash
# Set up the project's environment on a fresh machine with Python 3.11: uv in a small tool
# virtualenv, then the locked dependencies in .venv (compiled to bytecode: faster imports).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .tools/bin/uv ]; then
    "$PYTHON" -m venv .tools
    .tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.9,<0.14"
fi
.tools/bin/uv sync --frozen --compile-bytecode --python "$PYTHON" --quiet
