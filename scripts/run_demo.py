"""The main job on embedded defaults.

Creates a churn model from synthetic data, registers it in an embedded MLflow store with the alias
``champion``, writes scoring data, and runs the ``ai_batch_inference`` template through Airflow in
local mode. Everything lives under ``.demo/`` in the repository (``--home`` to move it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _configure(home: Path) -> dict[str, Path]:
    """Point Airflow, MLflow and the templates at ``home`` before Airflow is imported."""
    paths = {"airflow": home / "airflow", "data": home / "data"}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(paths["airflow"]),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dag_templates"),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
            "AIRFLOW__AI_PROVIDER__EXECUTION_MODE": "local",
            "AI_TEMPLATES_DATA_ROOT": str(paths["data"]),
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # use the embedded store under AIRFLOW_HOME
    sys.path.insert(0, str(REPO_ROOT))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".demo", help="where state is kept")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of scoring data")
    parser.add_argument("--fresh", action="store_true", help="delete the home folder first")
    args = parser.parse_args()
    if args.fresh and args.home.exists():
        shutil.rmtree(args.home)
    paths = _configure(args.home.resolve())
    started = time.monotonic()

    from airflow.utils import db

    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from dag_templates.include.churn_sample import train_and_register, write_customers

    print("1/4 Airflow metadata database (SQLite) ...", flush=True)
    db.initdb()
    hook = MlflowHook()
    print(f"2/4 Training the sample churn model and registering it in MLflow at {hook.tracking_uri} ...")
    model = train_and_register(hook.tracking_uri, "churn", alias="champion")
    print(f"    registered churn version {model['version']} (alias champion), metrics {model['metrics']}")
    scoring = paths["data"] / "scoring" / "customers"
    shutil.rmtree(scoring, ignore_errors=True)
    write_customers(str(scoring), args.rows, seed=1, n_files=2, with_label=False)
    print(f"3/4 Wrote {args.rows} customers to score under {scoring}")

    print("4/4 Running DAG ai_batch_inference through Airflow (local execution mode) ...", flush=True)
    from dag_templates.batch_inference import dag

    dag_run = dag.test()
    return _summarise(dag_run, hook, time.monotonic() - started)


def _summarise(dag_run, hook, seconds: float) -> int:
    from airflow_ai_provider.results import dag_run_outcomes

    print(f"\nDAG run {dag_run.run_id}: {dag_run.state} in {seconds:.0f} s")
    for outcome in dag_run_outcomes(dag_run.dag_id, dag_run.run_id):
        result = outcome.result
        if not result:
            print(f"  {outcome.task_id}[{outcome.map_index}]: {outcome.state}")
            continue
        model = result["model"]
        for output in result["outputs"]:
            print(
                f"  {outcome.task_id}[{outcome.map_index}]: {outcome.state}, {output['rows']} rows -> {output['uri']}"
            )
        print(
            f"      model {model['name']} v{model['version']}, "
            f"{result['metrics'].get('rows_per_s', 0):,.0f} rows/s, MLflow run {result['mlflow_run_id']}"
        )
    store = hook.tracking_uri
    print(f"\nMLflow store: {store}")
    print(
        f"  look at it:  .venv/bin/mlflow ui --backend-store-uri {store}  (then open http://127.0.0.1:5000)"
    )
    return 0 if dag_run.state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
