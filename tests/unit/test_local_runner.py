"""Local execution: output streamed line by line, the result returned, no orphans on kill or timeout."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from airflow_ai_provider.exceptions import JobFailedError
from airflow_ai_provider.execution.local import LocalJobRunner

FAKE_RUNTIME = """#!/bin/bash
# Stands in for a Python interpreter: receives "-m airflow_ai_provider.runtime <job> --spec-json ..."
echo "starting $3"
echo "second line"
{body}
"""


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_RUNTIME.format(body=body))
    script.chmod(0o755)
    return str(script)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_output_is_streamed_and_result_returned(tmp_path, caplog):
    python = _fake_python(
        tmp_path, """echo '{"status": "success", "rows_out": 5}' > "$AI_PROVIDER_RESULT_PATH" """
    )
    logger = logging.getLogger("test.runner")
    with caplog.at_level(logging.INFO, logger="test.runner"):
        result = LocalJobRunner([python, "-m", "airflow_ai_provider.runtime", "infer"], {}, logger).run()
    assert result == {"status": "success", "rows_out": 5}
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:2] == ["starting infer", "second line"]


def test_secrets_reach_the_child_environment_not_the_worker(tmp_path):
    python = _fake_python(
        tmp_path,
        """echo "{\\"status\\": \\"success\\", \\"seen\\": \\"$MLFLOW_TRACKING_TOKEN\\"}" > "$AI_PROVIDER_RESULT_PATH" """,
    )
    result = LocalJobRunner([python], {"MLFLOW_TRACKING_TOKEN": "t0k"}, logging.getLogger("x")).run()
    assert result["seen"] == "t0k"
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ


def test_runtime_that_writes_no_result_is_a_clear_error(tmp_path):
    python = _fake_python(tmp_path, "exit 7")
    with pytest.raises(JobFailedError, match="runtime exited with code 7 without writing a result"):
        LocalJobRunner([python], {}, logging.getLogger("x")).run()


def test_missing_interpreter_is_named():
    from airflow_ai_provider.exceptions import AiProviderConfigError

    with pytest.raises(AiProviderConfigError, match="/no/such/python"):
        LocalJobRunner(["/no/such/python"], {}, logging.getLogger("x")).run()


def test_kill_stops_the_runtime_and_everything_it_started(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    python = _fake_python(tmp_path, f"sleep 300 & echo $! > {pid_file}; wait")
    runner = LocalJobRunner([python], {}, logging.getLogger("x"))
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run_capturing(runner, errors))
    thread.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "fake runtime did not start"
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert _alive(grandchild)
    runner.kill()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert not _alive(grandchild)
    assert errors and isinstance(errors[0], JobFailedError)


def _run_capturing(runner: LocalJobRunner, errors: list[BaseException]) -> None:
    try:
        runner.run()
    except BaseException as err:
        errors.append(err)


def test_task_timeout_in_airflow_kills_the_job_and_fails_the_mlflow_run(airflow_db, tmp_path, monkeypatch):
    """A real Airflow task (dag.test) with execution_timeout: the job's process group dies with it."""
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from tests.dags.ai_test_dags import local_timeout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with MlflowHook().client() as client:
        client.create_registered_model("churn")
        client.create_model_version("churn", source="file:///nowhere")
    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setenv(
        "AI_TEST_FAKE_PYTHON", _fake_python(tmp_path, f"sleep 300 & echo $! > {pid_file}; wait")
    )
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    dag = local_timeout()
    dag_run = dag.test()
    assert dag_run.state == "failed"
    assert not _alive(int(pid_file.read_text()))
    with MlflowHook().client() as client:
        (run,) = client.search_runs(
            [client.get_experiment_by_name("airflow/local_timeout").experiment_id],
            filter_string="tags.`airflow.role` = 'task'",
        )
    assert run.info.status == "FAILED"
    assert json.loads(json.dumps(run.data.tags))["ai.execution_mode"] == "local"
