"""A hung MLflow or S3 endpoint fails the try within ``service_timeout``, retryable, naming the URI.

"Hung" is a real server whose whole process group is stopped with SIGSTOP: the kernel still accepts
connections, nothing answers. Each test runs a dedicated ``mlflow server`` or moto server (never the
session's), resumes it in ``finally`` and checks that the next try succeeds. With the derived
timeouts of an earlier release (30 s per request, 3 attempts) these calls held a try for 93-188 s;
the bounds asserted here are generous multiples of the 5 s budget the tests configure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_ai_provider.mlflow_registry import resolve_model
from airflow_ai_provider.mlflow_runs import finish_task_run, start_task_run
from airflow_ai_provider.runtime.contract import SERVICE_TIMEOUT_ENV
from airflow_ai_provider.runtime.contract.timeouts import MLFLOW_HTTP_ENV
from tests._support.airflow_records import dag_run_mlflow_runs
from tests._support.churn_sample import train_and_register, write_customers
from tests._support.servers import MlflowServer, S3Server, start_mlflow_server, start_s3_server, stop_server

TIMEOUT = 5
#: Interpreter start and imports of a runtime subprocess, on a busy two-core machine.
RUNTIME_START_ALLOWANCE = 20
CONN_ID = "mlflow_hung"


@contextlib.contextmanager
def stopped(server: MlflowServer | S3Server) -> Iterator[None]:
    """SIGSTOP the server's whole process group (workers too); SIGCONT it on the way out."""
    os.killpg(server.pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.pgid, signal.SIGCONT)


@pytest.fixture(scope="module")
def hung_mlflow(tmp_path_factory) -> Iterator[MlflowServer]:
    """A dedicated MLflow server with ``churn`` version 1 (alias ``champion``) registered."""
    server = start_mlflow_server(tmp_path_factory.mktemp("hung-mlflow"))
    try:
        train_and_register(server.url, "churn", alias="champion", n_rows=500, max_iter=5)
        yield server
    finally:
        os.killpg(server.pgid, signal.SIGCONT)
        stop_server(server)


@pytest.fixture(scope="module")
def hung_s3(tmp_path_factory) -> Iterator[S3Server]:
    """A dedicated moto server with one bucket holding a scoring input."""
    server = start_s3_server(tmp_path_factory.mktemp("hung-moto"))
    try:
        server.client().create_bucket(Bucket="hung-bucket")
        write_customers(
            "s3://hung-bucket/scoring",
            200,
            storage_options={
                "endpoint_url": server.endpoint_url,
                "key": server.access_key,
                "secret": server.secret_key,
                "region_name": server.region,
            },
        )
        yield server
    finally:
        os.killpg(server.pgid, signal.SIGCONT)
        stop_server(server)


@pytest.fixture
def service_timeout(monkeypatch) -> int:
    """``[ai_provider] service_timeout`` lowered to :data:`TIMEOUT`; no ``MLFLOW_HTTP_*`` override."""
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", str(TIMEOUT))
    for name in (*MLFLOW_HTTP_ENV, SERVICE_TIMEOUT_ENV):
        monkeypatch.delenv(name, raising=False)
    return TIMEOUT


def _run_runtime(spec: dict, tmp_path: Path, env: dict[str, str]) -> tuple[int, dict, str, float]:
    """Run one runtime job as the worker would; return exit code, result, stderr and seconds taken."""
    result_path = tmp_path / f"result-{time.monotonic_ns()}.json"
    child_env = {k: v for k, v in os.environ.items() if k not in MLFLOW_HTTP_ENV}
    child_env.update({SERVICE_TIMEOUT_ENV: str(TIMEOUT), **env})
    command = [
        sys.executable,
        "-m",
        "airflow_ai_provider.runtime",
        spec["job"],
        "--spec-json",
        json.dumps(spec),
    ]
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--result-path", str(result_path)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    return done.returncode, json.loads(result_path.read_text()), done.stderr, elapsed


def _infer_spec(tracking_uri: str, inputs: str, output: str) -> dict:
    return {
        "job": "infer",
        "model": {"name": "churn", "version": "1"},
        "inputs": [inputs],
        "output": output,
        "mlflow": {"tracking_uri": tracking_uri},
        "params": {"id_columns": ["customer_id"]},
    }


# --------------------------------------------------------------------------- MLflow, worker side


def test_hook_call_to_a_hung_mlflow_server_fails_within_the_service_timeout_and_is_retryable(
    hung_mlflow, service_timeout, airflow_db, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_ai_provider.exceptions import MlflowUnavailableError
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "mlflow", "host": hung_mlflow.url})
    )
    hook = MlflowHook(mlflow_conn_id=CONN_ID)
    with stopped(hung_mlflow):
        started = time.monotonic()
        with pytest.raises(MlflowUnavailableError) as raised:
            resolve_model(hook, "churn@champion")
        elapsed = time.monotonic() - started
        again = time.monotonic()
        with pytest.raises(MlflowUnavailableError, match="not asked again in this try"):
            resolve_model(hook, "churn@champion")
        asked_again_s = time.monotonic() - again

    message = str(raised.value)
    assert message.startswith(
        f"MLflow tracking server {hung_mlflow.url} did not answer within {TIMEOUT} s ([ai_provider] service_timeout)"
    )
    assert "\n" not in message
    assert not isinstance(raised.value, AirflowFailException)  # infrastructure: Airflow retries it
    assert elapsed < 2 * TIMEOUT
    assert asked_again_s < TIMEOUT  # the rest of the try does not wait on the server again
    # The next try (a new hook, as each try builds its own) finds the resumed server.
    assert resolve_model(MlflowHook(mlflow_conn_id=CONN_ID), "churn@champion").version == "1"


def test_recording_a_failure_on_a_hung_server_waits_one_short_attempt_not_the_whole_budget(
    hung_mlflow, airflow_db, monkeypatch
):
    from airflow_ai_provider.exceptions import MlflowUnavailableError
    from airflow_ai_provider.hooks.mlflow import FAILURE_PATH_TIMEOUT, MlflowHook
    from airflow_ai_provider.mlflow_runs import RunIdentity

    budget = 30  # an ordinary call may wait 2 attempts of 15 s
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", str(budget))
    for name in MLFLOW_HTTP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "mlflow", "host": hung_mlflow.url})
    )
    who = RunIdentity(dag_id="hung_services", run_id="manual__failure_path", task_id="score")
    hook = MlflowHook(mlflow_conn_id=CONN_ID)
    run = start_task_run(hook, who, "hung-services")
    with stopped(hung_mlflow):
        started = time.monotonic()
        with pytest.raises(MlflowUnavailableError, match=f"did not answer within {FAILURE_PATH_TIMEOUT} s"):
            finish_task_run(hook, run, who, succeeded=False)
        elapsed = time.monotonic() - started
    assert elapsed < budget / 2

    retry = RunIdentity(dag_id=who.dag_id, run_id=who.run_id, task_id=who.task_id, try_number=2)
    next_try = MlflowHook(mlflow_conn_id=CONN_ID)
    reopened = start_task_run(next_try, retry, "hung-services")
    finish_task_run(next_try, reopened, retry, succeeded=True)
    assert reopened.run_id == run.run_id
    with next_try.client() as client:
        assert client.get_run(run.run_id).info.status == "FINISHED"


def test_task_try_against_a_hung_mlflow_server_is_up_for_retry_in_bounded_time_and_the_retry_succeeds(
    hung_mlflow, service_timeout, airflow_db, tmp_path, monkeypatch
):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.dags.hung_service_dags import hung_mlflow_inference

    write_customers(str(tmp_path / "scoring"), 200, seed=3)
    retry_log = tmp_path / "retries.jsonl"
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_RETRY_LOG", str(retry_log))
    monkeypatch.setenv("AI_TEST_RESUME_PGID", str(hung_mlflow.pgid))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": hung_mlflow.url})
    )
    with stopped(hung_mlflow):  # the retry callback resumes it between the tries
        dag_run = hung_mlflow_inference().test()

    assert dag_run.state == "success"
    (first_try,) = [json.loads(line) for line in retry_log.read_text().splitlines()]
    assert (first_try["try_number"], first_try["state"]) == (1, "up_for_retry")
    assert f"MLflow tracking server {hung_mlflow.url} did not answer within {TIMEOUT} s" in first_try["error"]
    if first_try["started"] is not None:
        assert first_try["ended"] - first_try["started"] < 2 * TIMEOUT + 10
    with create_session() as session:
        tries = session.execute(
            select(TaskInstance.try_number, TaskInstance.state).where(TaskInstance.run_id == dag_run.run_id)
        ).all()
    assert [(row.try_number, str(row.state)) for row in tries] == [(2, "success")]
    assert list((tmp_path / "predictions").glob("*/part-*.parquet"))


_STOPPING_PYTHON = """#!/bin/bash
# The first try: stop the MLflow server (the task has booked its run), then run the job against it.
if [ ! -e "{marker}" ]; then
    touch "{marker}"
    kill -STOP -{pgid}
fi
exec "{python}" "$@"
"""


def test_server_that_stops_answering_mid_try_fails_the_try_within_the_runtime_and_failure_bounds(
    hung_mlflow, service_timeout, airflow_db, tmp_path, monkeypatch
):
    from airflow_ai_provider.hooks.mlflow import FAILURE_PATH_TIMEOUT
    from tests.dags.hung_service_dags import mlflow_hangs_mid_try

    write_customers(str(tmp_path / "scoring"), 200, seed=6)
    python = tmp_path / "stopping-python"
    python.write_text(
        _STOPPING_PYTHON.format(marker=tmp_path / "stopped", pgid=hung_mlflow.pgid, python=sys.executable)
    )
    python.chmod(0o755)
    retry_log = tmp_path / "retries.jsonl"
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_FAKE_PYTHON", str(python))
    monkeypatch.setenv("AI_TEST_RETRY_LOG", str(retry_log))
    monkeypatch.setenv("AI_TEST_RESUME_PGID", str(hung_mlflow.pgid))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": hung_mlflow.url})
    )
    try:
        dag_run = mlflow_hangs_mid_try().test()
    finally:
        os.killpg(hung_mlflow.pgid, signal.SIGCONT)

    assert dag_run.state == "success"
    (first_try,) = [json.loads(line) for line in retry_log.read_text().splitlines()]
    assert (first_try["try_number"], first_try["state"]) == (1, "up_for_retry")
    assert f"MLflow at {hung_mlflow.url} did not answer within {TIMEOUT} s" in first_try["error"]
    if first_try["started"] is not None:
        # booking + the runtime's wait + one short attempt to record the failure; then nothing waits
        bound = TIMEOUT + FAILURE_PATH_TIMEOUT + RUNTIME_START_ALLOWANCE
        assert first_try["ended"] - first_try["started"] < bound
    (task_run,) = dag_run_mlflow_runs(
        hung_mlflow.url, dag_run.run_id, experiment_name="airflow/mlflow_hangs_mid_try", role="task"
    )
    assert task_run.info.status == "FINISHED"  # the retry reopened the run the stopped try left open


# --------------------------------------------------------------------------- MLflow, runtime side


def test_runtime_job_against_a_hung_mlflow_server_exits_3_retryable_within_the_bound(hung_mlflow, tmp_path):
    write_customers(str(tmp_path / "scoring"), 200, seed=4)
    spec = _infer_spec(hung_mlflow.url, str(tmp_path / "scoring"), str(tmp_path / "out"))
    with stopped(hung_mlflow):
        code, result, stderr, elapsed = _run_runtime(spec, tmp_path, {})

    assert code == 3, stderr
    assert result["retryable"] is True
    assert result["error_type"] == "JobServiceError"
    assert re.search(
        rf"MLflow at {re.escape(hung_mlflow.url)} did not answer within {TIMEOUT} s", result["error"]
    )
    assert stderr.strip().splitlines()[-1] == f"airflow-ai-runtime error: {result['error']}"
    assert elapsed < 2 * TIMEOUT + RUNTIME_START_ALLOWANCE
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))

    code, result, stderr, _ = _run_runtime(spec, tmp_path, {})  # the retry, server resumed
    assert code == 0, stderr
    assert result["status"] == "success"
    assert list((tmp_path / "out").glob("part-*.parquet"))


# --------------------------------------------------------------------------- S3, runtime side


@pytest.mark.parametrize("side", ["input", "output"])
def test_runtime_job_against_a_hung_s3_endpoint_exits_3_retryable_naming_the_uri(
    side, hung_s3, hung_mlflow, tmp_path
):
    if side == "input":
        source, target = "s3://hung-bucket/scoring", str(tmp_path / "out")
        named = "s3://hung-bucket/scoring"
    else:
        write_customers(str(tmp_path / "scoring"), 200, seed=5)
        source, target = str(tmp_path / "scoring"), f"s3://hung-bucket/out-{tmp_path.name}"
        named = target
    spec = _infer_spec(hung_mlflow.url, source, target)
    with stopped(hung_s3):
        code, result, stderr, elapsed = _run_runtime(spec, tmp_path, hung_s3.env())

    assert code == 3, stderr
    assert result["retryable"] is True
    assert named in result["error"]
    assert f"object storage ({hung_s3.endpoint_url}) did not answer within {TIMEOUT} s" in result["error"]
    assert elapsed < 2 * TIMEOUT + RUNTIME_START_ALLOWANCE

    code, result, stderr, _ = _run_runtime(spec, tmp_path, hung_s3.env())  # the retry, endpoint resumed
    assert code == 0, stderr
    assert result["outputs"]
