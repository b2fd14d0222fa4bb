"""A task process that dies before it could finish its MLflow runs leaves none of them RUNNING.

A real worker-like process books a task run through :class:`MlflowHook` against the session's real
``mlflow server``, starts its :class:`TaskRunGuard` and is then killed with ``SIGKILL``: nothing in
it can run any more, so only the guard can close the runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

_WORKER = """
import json, sys, time
from airflow_ai_provider.execution.run_guard import TaskRunGuard
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.mlflow_runs import RunIdentity, start_task_run

who = RunIdentity(dag_id="guarded", run_id=sys.argv[1], task_id="score", try_number=int(sys.argv[2]))
hook = MlflowHook()
run = start_task_run(hook, who, "guarded-runs")
guard = TaskRunGuard.for_task_run(hook, run, who)
print(json.dumps({"run_id": run.run_id, "parent_run_id": run.parent_run_id}), flush=True)
if sys.argv[3] == "release":
    guard.release()
    print("released", flush=True)
time.sleep(600)
"""


def _start_worker(mlflow_url: str, dag_run_id: str, try_number: int, mode: str) -> tuple:
    import json

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_url}
    env.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, dag_run_id, str(try_number), mode],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    runs = json.loads(process.stdout.readline())
    if mode == "release":
        assert process.stdout.readline().strip() == "released"
    return process, runs


def _wait_for_status(client, run_id: str, wanted: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    status = client.get_run(run_id).info.status
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get_run(run_id).info.status
    return status


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_task_process_leaves_its_task_and_parent_runs_failed(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    process, runs = _start_worker(mlflow_server.url, f"manual__{uuid.uuid4().hex}", 1, "hold")
    assert client.get_run(runs["run_id"]).info.status == "RUNNING"
    _kill(process)

    assert _wait_for_status(client, runs["run_id"], "FAILED") == "FAILED"
    assert _wait_for_status(client, runs["parent_run_id"], "FAILED") == "FAILED"
    assert "killed" in client.get_run(runs["run_id"]).data.tags["ai.error"]


def test_released_guard_leaves_the_runs_to_the_task(mlflow_server):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    process, runs = _start_worker(mlflow_server.url, f"manual__{uuid.uuid4().hex}", 1, "release")
    _kill(process)
    time.sleep(3)  # long enough for a guard that wrongly acted to have marked the run
    assert client.get_run(runs["run_id"]).info.status == "RUNNING"


def test_guard_of_an_earlier_try_leaves_a_reopened_run_alone(mlflow_server):
    from mlflow import MlflowClient

    from airflow_ai_provider.runtime.run_guard import close_orphaned_runs

    client = MlflowClient(tracking_uri=mlflow_server.url)
    dag_run_id = f"manual__{uuid.uuid4().hex}"
    process, runs = _start_worker(mlflow_server.url, dag_run_id, 2, "release")
    _kill(process)
    closed = close_orphaned_runs(
        {"tracking_uri": mlflow_server.url, "run_id": runs["run_id"], "try_number": 1}
    )
    assert closed == []
    assert client.get_run(runs["run_id"]).info.status == "RUNNING"
