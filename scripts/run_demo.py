"""The main job on embedded defaults: the whole template kit through the real Airflow scheduler.

Starts a local MLflow server and Airflow (``airflow standalone``: scheduler with LocalExecutor,
SQLite, the templates as DAG folder, local execution mode), writes synthetic churn data, lands new
customer files in the landing folder and follows the chain they start by themselves (no trigger):
validated data -> retrained, gated, promoted model -> batch predictions. Prints a summary and stops
every process it started. State lives in ``.demo/``; ``--data-root s3`` keeps the data in a bucket
of a local moto server instead of a folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests._support.stack import LANDING, land_customers, run_chain, start_stack, write_sample_data, xcom  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".demo", help="where state is kept")
    parser.add_argument("--rows", type=int, default=20_000, help="new labelled customers to ingest")
    parser.add_argument("--scoring-rows", type=int, default=100_000, help="customers to score")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow and MLflow up")
    parser.add_argument("--data-root", choices=("local", "s3"), default="local", help="where data lives")
    args = parser.parse_args()
    home = args.home.resolve()
    shutil.rmtree(home, ignore_errors=True)
    print("1/3 Starting MLflow and Airflow (scheduler, LocalExecutor, SQLite) ...", flush=True)
    stack = start_stack(home, data_root=args.data_root)
    try:
        print(f"    Airflow {stack.airflow.url}   MLflow {stack.mlflow.url}", flush=True)
        print(f"2/3 Writing the holdout and the customers to score under {stack.uri()}", flush=True)
        write_sample_data(stack, rows=args.rows, scoring_rows=args.scoring_rows)
        print(
            f"3/3 Landing new customer files in {stack.uri(LANDING)}: churn_ingest starts by itself, "
            "the rest follows through Assets ...",
            flush=True,
        )
        report = run_chain(stack, rows=args.rows)
        ok = _summarise(stack, report)
        if args.keep_running:
            _land_next_batch(stack, rows=args.rows)
            _print_running(stack)
            with contextlib.suppress(KeyboardInterrupt):
                stack.airflow.process.wait()
        return 0 if ok else 1
    finally:
        stack.stop()


def _summarise(stack, report) -> bool:
    print(f"\nChain finished in {report.seconds:.0f} s")
    for dag_id, run in report.runs.items():
        tasks = ", ".join(f"{task} {state}" for task, state in report.tasks[dag_id].items())
        print(f"  {dag_id:<22} {run['dag_run_id']}: {run['state']}\n      {tasks}")
    complete = len(report.runs) == 3 and all(run["state"] == "success" for run in report.runs.values())
    if not complete:
        print("\nThe chain did not complete: see the task logs under", stack.airflow.home / "logs")
        return False
    retrain = report.runs["churn_retrain"]["dag_run_id"]
    promoted = xcom(stack, "churn_retrain", retrain, "promote")
    inference = report.runs["churn_batch_inference"]["dag_run_id"]
    summary = xcom(stack, "churn_batch_inference", inference, "route_low_confidence")
    print(
        f"\nModel promoted: {promoted['model_name']} version {promoted['version']} "
        f"(previous champion: {promoted['previous_version'] or 'none'})"
    )
    print(f"Rows scored: {summary['rows']} with version {summary['model_version']}")
    print(
        f"Low-confidence rows routed to review: {summary['low_confidence_rows']} -> {summary['review_file'] or '-'}"
    )
    print(f"Predictions: {summary['output_uri']}")
    lineage = REPO_ROOT / ".venv" / "bin" / "airflow-ai"
    if lineage.exists():
        print("\nLineage of the predictions:")
        subprocess.run(
            [
                str(lineage),
                "lineage",
                f"{summary['output_uri']}/part-00000-of-00002.parquet",
                "--tracking-uri",
                stack.mlflow.url,
            ],
            env={**os.environ, "AIRFLOW_HOME": str(stack.airflow.home)},
            check=False,
        )
    print("\nKeep it running, land more files and watch them scored: bash scripts/demo.sh --keep-running")
    return True


def _land_next_batch(stack, *, rows: int) -> None:
    """Land one more batch while the stack runs: the chain starts again by itself."""
    land_customers(stack, rows=rows, seed=22)
    s3_env = ""
    if stack.s3:
        s3_env = (
            f"AWS_ENDPOINT_URL={stack.s3.endpoint_url} AWS_ACCESS_KEY_ID={stack.s3.access_key} "
            f"AWS_SECRET_ACCESS_KEY={stack.s3.secret_key} AWS_DEFAULT_REGION={stack.s3.region} "
        )
    print(
        f"\nA new batch just landed in {stack.uri(LANDING)}: churn_ingest starts by itself (watch it in "
        "the UI). To land more:\n"
        f"  {s3_env}.venv/bin/python -m tests._support.churn_sample write {stack.uri(LANDING)} "
        f"--rows {rows} --files 2 --with-label --seed 23\n"
        "A manual trigger of churn_ingest (UI or REST) ingests whatever is in the landing folder."
    )


def _print_running(stack) -> None:
    """Where the running servers are and how to log in to Airflow."""
    passwords = stack.airflow.home / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin", "?")
    print(
        "\nAirflow and MLflow keep running; press Ctrl-C to stop them.\n"
        f"  Airflow UI  {stack.airflow.url}   user admin, password {password}\n"
        f"              (generated by the Simple auth manager, kept in {passwords})\n"
        f"  MLflow UI   {stack.mlflow.url}"
    )


if __name__ == "__main__":
    sys.exit(main())
