"""Local execution: output streamed line by line, the result returned, no orphans on kill or timeout
(helpers in a new session included), a scratch folder per task instance cleaned by every try."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

from airflow_ai_provider.exceptions import JobFailedError
from airflow_ai_provider.execution.local import LocalJobRunner
from airflow_ai_provider.runtime.contract.processes import running
from tests._support.system import helper_argv, new_marker, no_leftover, with_marker

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
    assert running(grandchild)
    runner.kill()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert not running(grandchild)
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
    assert not running(int(pid_file.read_text()))
    with MlflowHook().client() as client:
        (run,) = client.search_runs(
            [client.get_experiment_by_name("airflow/local_timeout").experiment_id],
            filter_string="tags.`airflow.role` = 'task'",
        )
    assert run.info.status == "FAILED"
    assert json.loads(json.dumps(run.data.tags))["ai.execution_mode"] == "local"


def _helper_in_new_session(marker: str) -> str:
    """Bash lines that start a helper in a new session (outside the runtime's process group), holding
    the runtime's stdout, and wait until it runs."""
    helper = shlex.join(helper_argv(marker))
    return f"setsid {helper} &\nuntil grep -qa {marker} /proc/$!/cmdline 2>/dev/null; do sleep 0.05; done"


def test_helper_in_a_new_session_is_ended_when_the_runtime_is_killed_with_sigkill(tmp_path, caplog):
    marker = new_marker()
    python = _fake_python(tmp_path, f"{_helper_in_new_session(marker)}\nkill -9 $$")
    with no_leftover(marker), caplog.at_level(logging.WARNING, logger="x"):
        started = time.monotonic()
        with pytest.raises(JobFailedError, match="runtime exited with code -9 without writing a result"):
            LocalJobRunner([python], {}, logging.getLogger("x"), task_key="d/r/t/-1").run()
        assert with_marker(marker) == []
        assert time.monotonic() - started < 30, "the helper holding stdout does not keep the task waiting"
    assert any("left by this try of this task" in record.getMessage() for record in caplog.records)


def test_the_next_try_ends_what_an_earlier_try_left_and_starts_with_an_empty_scratch_folder(tmp_path):
    from airflow_ai_provider.runtime.contract import MARKER_ENV

    runner = LocalJobRunner(
        [_fake_python(tmp_path, _REPORT_SCRATCH)], {}, logging.getLogger("x"), "d/r/t/3", tmp_path / "root"
    )
    marker = new_marker()
    with no_leftover(marker):
        # What a try killed with its worker (SIGKILL) left: a helper carrying the task's marker, and
        # the scratch folder with a model copy in it.
        env = {**os.environ, MARKER_ENV: runner.marker}
        helper = subprocess.Popen(helper_argv(marker), env=env, start_new_session=True)
        (runner.scratch / "tmp" / "ai-model-x").mkdir(parents=True)
        (runner.scratch / "tmp" / "ai-model-x" / "model.skops").write_bytes(b"x" * 1000)

        result = runner.run()

        helper.wait(timeout=10)
        assert result["helper_alive"] == "no" and result["tmp_entries"] == ""
        assert result["tmpdir"] == str(runner.scratch / "tmp")
        assert not runner.scratch.exists(), "the scratch folder goes with the try"


_REPORT_SCRATCH = """alive=no; pgrep -f ai-test-helper- >/dev/null && alive=yes
echo "{\\"status\\": \\"success\\", \\"helper_alive\\": \\"$alive\\", \\"tmpdir\\": \\"$TMPDIR\\", \\"tmp_entries\\": \\"$(ls -A "$TMPDIR")\\"}" > "$AI_PROVIDER_RESULT_PATH"
"""


def test_runtime_that_cannot_write_its_result_on_a_full_disk_fails_without_retry(tmp_path):
    from airflow_ai_provider.exceptions import AiProviderConfigError

    line = "no space left on device (ENOSPC) while writing the result /x/return.json: free space there"
    python = _fake_python(tmp_path, f"echo 'airflow-ai-runtime error: {line}'; exit 2")
    with pytest.raises(
        AiProviderConfigError, match=r"without writing a result: no space left on device \(ENOSPC\)"
    ):
        LocalJobRunner([python], {}, logging.getLogger("x")).run()


def test_task_timeout_in_airflow_ends_a_helper_that_started_a_new_session(airflow_db, tmp_path, monkeypatch):
    """A real Airflow task (dag.test) with execution_timeout: a helper outside the job's process group,
    in a session of its own, is ended too (by the task marker in its environment)."""
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from tests.dags.ai_test_dags import local_timeout

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with MlflowHook().client() as client:
        client.create_registered_model("churn")
        client.create_model_version("churn", source="file:///nowhere")
    marker = new_marker()
    monkeypatch.setenv(
        "AI_TEST_FAKE_PYTHON", _fake_python(tmp_path, f"{_helper_in_new_session(marker)}\nsleep 300")
    )
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    with no_leftover(marker):
        started = time.monotonic()
        dag_run = local_timeout().test()
        assert dag_run.state == "failed"
        assert with_marker(marker) == []
        assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("folder", "size", "seen"),
    [
        ("/srv/model-cache", "512", "/srv/model-cache:512"),
        ("off", "512", ""),
    ],
)
def test_the_runtime_gets_the_workers_model_cache_from_the_config(tmp_path, monkeypatch, folder, size, seen):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_DIR", folder)
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_MAX_MB", size)
    monkeypatch.delenv("AI_PROVIDER_MODEL_CACHE", raising=False)
    python = _fake_python(
        tmp_path,
        """echo "{\\"status\\": \\"success\\", \\"seen\\": \\"$AI_PROVIDER_MODEL_CACHE\\"}" > "$AI_PROVIDER_RESULT_PATH" """,
    )
    assert LocalJobRunner([python], {}, logging.getLogger("x")).run()["seen"] == seen


def test_the_default_model_cache_is_a_private_folder_under_the_workers_temp_dir(monkeypatch):
    import tempfile

    from airflow_ai_provider.config import model_cache_env

    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_MAX_MB", raising=False)
    expected = f"{tempfile.gettempdir()}/airflow-ai-model-cache-{os.getuid()}:2048"
    assert model_cache_env() == {"AI_PROVIDER_MODEL_CACHE": expected}


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("MODEL_CACHE_DIR", "relative/cache", "model_cache_dir"),
        ("MODEL_CACHE_MAX_MB", "-5", "model_cache_max_mb"),
    ],
)
def test_a_bad_model_cache_option_is_one_line_naming_it(monkeypatch, option, value, named):
    from airflow_ai_provider.config import model_cache_env
    from airflow_ai_provider.exceptions import AiProviderConfigError

    monkeypatch.setenv(f"AIRFLOW__AI_PROVIDER__{option}", value)
    with pytest.raises(AiProviderConfigError, match=f"invalid \\[ai_provider\\] {named} "):
        model_cache_env()
