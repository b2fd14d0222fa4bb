"""The main job: the template kit running as one system through the real Airflow scheduler.

One trigger of ``churn_ingest`` leads, through Assets, to validated data -> a retrained, gated and
promoted model -> batch predictions. Airflow runs as ``airflow standalone`` (api-server, scheduler
with LocalExecutor, dag-processor, triggerer; SQLite) with the templates as its DAG folder and
local execution mode; MLflow is a local ``mlflow server``; local folders stand in for S3.
Used by ``scripts/run_demo.py`` (prints a summary) and the end-to-end test (asserts on it).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests._support.servers import AirflowServer, MlflowServer, start_airflow, start_mlflow_server

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = ("churn_ingest", "churn_retrain", "churn_batch_inference")
POOLS = {"ai_training": 1, "ai_inference": 2}


@dataclass
class Stack:
    """The running servers and where everything lives."""

    home: Path
    data: Path
    mlflow: MlflowServer
    airflow: AirflowServer

    def stop(self) -> None:
        self.airflow.stop()
        self.mlflow.stop()


@dataclass
class ChainReport:
    """What one trigger of the chain produced."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0


def write_sample_data(data: Path, *, rows: int, scoring_rows: int, corrupt: bool = False) -> None:
    """New labelled customers in landing/, a labelled holdout, and customers to score."""
    from tests._support.churn_sample import make_customers, write_customers

    for folder in ("landing", "holdout", "scoring"):
        shutil.rmtree(data / folder, ignore_errors=True)
    if corrupt:
        frame = make_customers(rows, seed=11)
        frame.loc[: rows // 10, "monthly_charges"] = -50.0  # fails the suite's range check
        (data / "landing/customers").mkdir(parents=True)
        frame.to_parquet(data / "landing/customers/customers-00000.parquet", index=False)
    else:
        write_customers(str(data / "landing/customers"), rows, seed=11, n_files=2, with_label=True)
    write_customers(str(data / "holdout/customers"), max(rows // 4, 2_000), seed=12, with_label=True)
    write_customers(str(data / "scoring/customers"), scoring_rows, seed=13, n_files=2)


def start_stack(home: Path, *, extra_env: dict[str, str] | None = None) -> Stack:
    """Start MLflow and Airflow for the templates, with pools and the three chained DAGs unpaused."""
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    mlflow = start_mlflow_server(home / "mlflow")
    env = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": mlflow.url}),
        "AIRFLOW__AI_PROVIDER__EXECUTION_MODE": "local",
        "AI_TEMPLATES_DATA_ROOT": str(data),
        "AI_TEMPLATES_REVIEW_TIMEOUT_MIN": "0.25",
        "PYTHONPATH": str(REPO_ROOT),
        **(extra_env or {}),
    }
    try:
        airflow = start_airflow(home / "airflow", REPO_ROOT / "dag_templates", extra_env=env)
    except BaseException:
        mlflow.stop()
        raise
    stack = Stack(home, data, mlflow, airflow)
    try:
        for pool, slots in POOLS.items():
            airflow.api("POST", "/pools", {"name": pool, "slots": slots, "include_deferred": False})
        for dag_id in DAGS:
            _wait(lambda dag_id=dag_id: _exists(airflow, f"/dags/{dag_id}"), 180, f"DAG {dag_id} parsed")
            airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    except BaseException:
        stack.stop()
        raise
    return stack


def run_chain(stack: Stack, *, timeout: float = 900) -> ChainReport:
    """Trigger ``churn_ingest`` and follow the Asset-triggered runs until the chain settles."""
    api = stack.airflow.api
    started = time.monotonic()
    report = ChainReport()
    since = {
        dag_id: {r["dag_run_id"] for r in api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]}
        for dag_id in DAGS
    }
    ingest = api("POST", "/dags/churn_ingest/dagRuns", {"logical_date": None})
    report.runs["churn_ingest"] = _wait_finished(stack.airflow, "churn_ingest", ingest["dag_run_id"], timeout)
    for dag_id in DAGS[1:]:
        upstream_ok = all(run["state"] == "success" for run in report.runs.values())
        promoted = (
            dag_id != "churn_batch_inference" or _task_state(stack.airflow, report, "promote") == "success"
        )
        if not (upstream_ok and promoted):
            break
        run_id = _wait(lambda d=dag_id: _new_run(stack.airflow, d, since[d]), 120, f"a run of {dag_id}")
        report.runs[dag_id] = _wait_finished(stack.airflow, dag_id, run_id, timeout)
    for dag_id, run in report.runs.items():
        instances = api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        report.tasks[dag_id] = {
            (ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"): ti["state"]
            for ti in instances
        }
    report.seconds = time.monotonic() - started
    return report


def xcom(stack: Stack, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """A task's returned value, through the REST API."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.airflow.api("GET", f"{path}?map_index={map_index}&deserialize=true")["value"]


def _task_state(airflow: AirflowServer, report: ChainReport, task_id: str) -> str | None:
    run = report.runs.get("churn_retrain")
    if not run:
        return None
    instances = airflow.api("GET", f"/dags/churn_retrain/dagRuns/{run['dag_run_id']}/taskInstances")
    return next((ti["state"] for ti in instances["task_instances"] if ti["task_id"] == task_id), None)


def _exists(airflow: AirflowServer, path: str) -> bool:
    try:
        airflow.api("GET", path)
    except Exception:
        return False
    return True


def _new_run(airflow: AirflowServer, dag_id: str, known: set[str]) -> str | None:
    """A run of ``dag_id`` that an Asset event started since ``known`` was taken."""
    runs = airflow.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
    fresh = [
        run["dag_run_id"]
        for run in runs
        if run["dag_run_id"] not in known and run["run_type"] == "asset_triggered"
    ]
    return fresh[0] if fresh else None


def _wait_finished(airflow: AirflowServer, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    return _wait(finished, timeout, f"{dag_id} run {run_id} to finish")


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")
