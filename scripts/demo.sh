#!/usr/bin/env bash
# The main job on embedded defaults: sample model -> MLflow registry -> batch inference through
# Airflow in local mode. Everything it creates lives under .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/run_demo.py "$@"
