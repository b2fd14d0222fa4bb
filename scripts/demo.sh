#!/usr/bin/env bash
# The main job on embedded defaults: the template kit chained by Assets, through the real Airflow
# scheduler in local execution mode. Everything it creates lives under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/run_demo.py "$@"
