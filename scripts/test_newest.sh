#!/usr/bin/env bash
# Run the test suite the way users install the provider: the built wheel pip-installed into a fresh
# Python 3.11 venv with apache-airflow==3.3.2 and the dev dependency group, every other package at
# the newest release the declared ranges allow. The tests run from a copy of the tracked tree without
# the package, so the wheel's package is the one imported. Arguments go to pytest; the exit code is
# pytest's. Without arguments (as CI runs it) it runs tests/unit and tests/integration, where the
# resolved releases meet the provider's code: tests/podman plays the runtime image, which stays pinned
# to uv.lock, and tests/e2e drives the real scheduler of Airflow 3.3.2, the same in both passes (the
# DAG-level behaviour of the newest releases is in tests/integration, through dag.test()); both run
# in the locked pass. `bash scripts/test_newest.sh tests` runs the whole suite here too.
#   NEWEST_DIR  where the wheel, the venv and the tree copy go (default /tmp/newest), recreated each run
#   PYTHON      the interpreter for the venv (default python3.11)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
PYTHON="${PYTHON:-python3.11}"
AIRFLOW_VERSION="3.3.2"
WORK="${NEWEST_DIR:-/tmp/newest}"
case "$WORK" in "$REPO"|"$REPO"/*) echo "test_newest.sh: NEWEST_DIR must lie outside the repo" >&2; exit 2 ;; esac

rm -rf "$WORK"
mkdir -p "$WORK/dist" "$WORK/tree"
[ -x .tools/bin/uv ] || bash scripts/bootstrap.sh
.tools/bin/uv build --wheel --quiet --out-dir "$WORK/dist"
wheel="$(ls "$WORK"/dist/*.whl)"

"$PYTHON" -m venv "$WORK/venv"
mapfile -t dev < <("$WORK/venv/bin/python" -c \
    'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["dependency-groups"]["dev"]))' \
    pyproject.toml)
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip install --quiet "$wheel" "apache-airflow==$AIRFLOW_VERSION" "${dev[@]}"
"$WORK/venv/bin/python" -m pip list --format=freeze >"$WORK/resolved.txt"
echo "test_newest.sh: resolved versions in $WORK/resolved.txt:"
grep -i -E '^(apache-airflow|apache-airflow-providers-[a-z-]+|mlflow|great.expectations|pandas|numpy|pyarrow|scikit.learn|scipy|boto3|moto|sqlalchemy|pydantic)==' \
    "$WORK/resolved.txt" | sed 's/^/    /'

# The tracked files (with their working-tree contents) except the package itself.
git ls-files -z --cached --others --exclude-standard \
    | grep -z -v -E '^(airflow_ai_provider|benchmarks)/' \
    | while IFS= read -r -d '' path; do
        [ -e "$path" ] && printf '%s\0' "$path"
    done \
    | xargs -0 cp --parents -t "$WORK/tree"

cd "$WORK/tree"
package="$("$WORK/venv/bin/python" -c 'import airflow_ai_provider as p; print(p.__file__)')"
case "$package" in
    "$WORK/venv/"*) ;;
    *) echo "test_newest.sh: airflow_ai_provider imports from $package, not the installed wheel" >&2; exit 2 ;;
esac
export PATH="$WORK/venv/bin:$PATH"
# The podman tests build the runtime image (pinned to uv.lock) from the checkout, which the copy lacks.
export RUNTIME_SOURCE="$REPO" UV="$REPO/.tools/bin/uv"
set +e
[ $# -gt 0 ] || set -- tests/unit tests/integration
"$WORK/venv/bin/python" -m pytest -p no:cacheprovider "$@"
status=$?
echo "test_newest.sh: pytest exit code $status (venv $WORK/venv, package $package)"
exit "$status"
