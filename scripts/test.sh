#!/usr/bin/env bash
# Set up and run every check: ruff lint, ruff format, the import boundary between the control plane
# and the runtime (lint-imports, contracts in pyproject.toml), and the whole pytest suite.
# In CI (or as root without podman) podman is installed first, so the pod manifests run for real
# (tests/podman); elsewhere those tests skip when podman is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -n "${CI:-}" ] || { ! command -v podman >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }; then
    if CONTAINERS_CONF="$(bash scripts/install_podman.sh)"; then
        export CONTAINERS_CONF
    else
        echo "test.sh: podman could not be installed; the podman tests will skip" >&2
    fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache
exec .venv/bin/pytest "$@"
