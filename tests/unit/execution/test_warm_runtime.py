"""The warm runtime: local jobs forked by one long-lived server per interpreter behave as new runtime
processes (result, streamed output, exit codes, kills, environment, temporary folder), the server is
started once, replaced when out of date, exits when idle, and a job falls back to a new process when
the server cannot be used. Real processes throughout; every server a test starts is stopped."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_ai_provider.execution import warm_runtime
from airflow_ai_provider.execution.local import LocalJobRunner
from airflow_ai_provider.runtime.contract import MARKER_ENV
from airflow_ai_provider.runtime.contract.processes import running
from tests._support.system import run_at_once, wait_for
from tests._support.warm_servers import servers_under, stop_servers_under
from tests.conftest import REPO_ROOT
from tests.unit.runtime.conftest import customers, read_output, registry, write_parquet

__all__ = ["registry"]

RUNTIME = [sys.executable, "-m", "airflow_ai_provider.runtime"]
#: A spec that fails validation: exit code 2 and one error line, from the runtime itself.
BAD_SPEC = [*RUNTIME, "infer", "--spec-json", '{"job": "infer"}']
BAD_SPEC_ERROR = "infer job spec is missing field(s): inputs, mlflow, model, output"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warm_root() -> Iterator[Path]:
    """A short scratch root (a Unix socket path is at most 107 bytes); its servers are stopped after."""
    root = Path(tempfile.mkdtemp(prefix="aiw-", dir="/tmp"))
    try:
        yield root
    finally:
        stop_servers_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_model_cache(monkeypatch) -> None:
    """Both paths load the model the same way (no cache hit for the second of two runs)."""
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_DIR", "off")


def run_job(
    argv: list[str], root: Path, env: dict[str, str] | None = None, *, warm: bool = True
) -> tuple[LocalJobRunner, Any, list[logging.LogRecord]]:
    """Run one job through :class:`LocalJobRunner`; return it, its result (or error) and its log."""
    logger = logging.getLogger(f"test.warm.{uuid.uuid4().hex}")
    logger.propagate, logger.level = False, logging.INFO
    lines = _Lines()
    logger.addHandler(lines)
    runner = LocalJobRunner(argv, env or {}, logger, scratch_root=root, warm=warm)
    try:
        outcome: Any = runner.run()
    except Exception as err:
        outcome = err
    return runner, outcome, lines.records


def probe(
    tmp_path: Path, name: str, *, sleep: bool = False, **extra: str
) -> tuple[list[str], dict[str, str]]:
    """A train job whose training module (:mod:`tests._support.warm_probe`) reports on its process."""
    spec = {
        "job": "train",
        "inputs": [f"file://{tmp_path}/no-such-input.parquet"],
        "mlflow": {"tracking_uri": f"file://{tmp_path}/mlruns", "run_id": "warm-probe"},
        "params": {
            "training_function": "tests._support.warm_probe:train",
            "label_column": "churned",
            "model_name": "warm-probe",
        },
    }
    env = {"MLFLOW_ALLOW_FILE_STORE": "true", "WARM_PROBE_OUT": str(tmp_path / f"{name}.json"), **extra}
    if sleep:
        env["WARM_PROBE_SLEEP"] = "1"
    return [*RUNTIME, "train", "--spec-json", json.dumps(spec)], env


def report(tmp_path: Path, name: str, timeout: float = 60) -> dict[str, Any]:
    path = tmp_path / f"{name}.json"
    wait_for(path.exists, timeout=timeout, what=f"the probe {name}")
    return json.loads(path.read_text())


def test_a_job_through_the_warm_runtime_writes_the_result_of_a_new_process_and_streams_its_output(
    registry, warm_root, tmp_path
):
    data = write_parquet(tmp_path / "in" / "data.parquet", customers(300, seed=3))
    runs = {}
    for warm in (False, True):
        spec = registry.spec("hgb", f"file://{data}", tmp_path / f"out-{warm}")
        runs[warm] = run_job([*RUNTIME, "infer", "--spec-json", spec.to_json()], warm_root, warm=warm)
    (fresh, fresh_result, fresh_log), (forked, warm_result, warm_log) = runs[False], runs[True]

    assert isinstance(forked.process, warm_runtime.WarmJob) and isinstance(fresh.process, subprocess.Popen)
    assert warm_result["status"] == fresh_result["status"] == "success", warm_result
    assert set(warm_result) == set(fresh_result)
    for key in ("job", "rows_out", "shard", "model_uri"):
        assert warm_result.get(key) == fresh_result.get(key), key
    assert read_output(tmp_path / "out-True").equals(read_output(tmp_path / "out-False"))
    messages = [record.getMessage() for record in warm_log]
    forked_line = f"Runtime forked by the warm runtime server {forked.process.server_pid} as process {forked.process.pid}"
    assert messages[0] == forked_line
    assert [m.split(" ")[0] for m in messages[1:]] == [r.getMessage().split(" ")[0] for r in fresh_log]
    assert any(m.startswith("job infer succeeded") for m in messages), messages
    assert forked.rusage.ru_maxrss > 0 and forked.wall_seconds > 0


def test_a_second_job_forks_from_the_same_server_with_scikit_learn_already_imported(warm_root, tmp_path):
    runners = []
    for name in ("first", "second"):
        argv, env = probe(tmp_path, name)
        runner, result, _ = run_job(argv, warm_root, env)
        assert result["status"] == "failed" and "input not found" in result["error"], result
        runners.append(runner)
    first, second = report(tmp_path, "first"), report(tmp_path, "second")
    argv, env = probe(tmp_path, "fresh")
    run_job(argv, warm_root, env, warm=False)

    assert runners[0].process.server_pid == runners[1].process.server_pid > 0
    assert first["pid"] != second["pid"] != runners[1].process.server_pid
    assert first["sklearn_before_the_job"] and second["sklearn_before_the_job"]
    assert report(tmp_path, "fresh")["sklearn_before_the_job"] is False, "the control: a new process"
    assert servers_under(warm_root) == [runners[1].process.server_pid]


def test_kill_ends_the_forked_job_and_a_grandchild_it_started(warm_root, tmp_path):
    runner, thread, outcome = _start_sleeper(tmp_path, warm_root, "sleeper")
    seen = report(tmp_path, "sleeper")
    assert isinstance(runner.process, warm_runtime.WarmJob) and seen["pid"] == runner.process.pid
    assert running(seen["pid"]) and running(seen["grandchild"])

    runner.kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not running(seen["pid"]) and not running(seen["grandchild"])
    (result,) = outcome
    assert result["status"] == "failed" and result["retryable"] and "SIGTERM" in result["error"]
    assert runner.process.returncode == 128 + signal.SIGTERM


def _start_sleeper(
    tmp_path: Path, root: Path, name: str
) -> tuple[LocalJobRunner, threading.Thread, list[Any]]:
    """A sleeping probe job run by a runner in a thread; returns once the job reported."""
    argv, env = probe(tmp_path, name, sleep=True)
    outcome: list[Any] = []
    runner = LocalJobRunner(argv, env, logging.getLogger(f"test.warm.{name}"), scratch_root=root, warm=True)

    def run() -> None:
        try:
            outcome.append(runner.run())
        except Exception as err:
            outcome.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    report(tmp_path, name)
    return runner, thread, outcome


def test_a_server_stopped_with_sigterm_stops_its_job_retryably_and_removes_its_socket(warm_root, tmp_path):
    runner, thread, outcome = _start_sleeper(tmp_path, warm_root, "stopped")
    seen = report(tmp_path, "stopped")
    (socket_path,) = (warm_root / warm_runtime.FOLDER).glob("*.sock")

    os.kill(runner.process.server_pid, signal.SIGTERM)
    thread.join(timeout=30)
    assert not thread.is_alive()
    (result,) = outcome
    assert result["status"] == "failed" and result["retryable"] and "SIGTERM" in result["error"]
    assert not running(seen["pid"]) and not running(seen["grandchild"])
    wait_for(lambda: not running(runner.process.server_pid), timeout=15, what="the server to exit")
    assert not socket_path.exists()


def test_a_job_dies_with_its_server_and_the_try_fails_retryably(warm_root, tmp_path):
    from airflow_ai_provider.exceptions import JobFailedError

    runner, thread, outcome = _start_sleeper(tmp_path, warm_root, "orphaned")
    seen = report(tmp_path, "orphaned")

    os.kill(runner.process.server_pid, signal.SIGKILL)
    thread.join(timeout=30)
    assert not thread.is_alive()
    (error,) = outcome
    assert isinstance(error, JobFailedError) and "code -9 without writing a result" in str(error)
    assert not running(seen["pid"]) and not running(seen["grandchild"])


_CLIENT = """
import json, sys, time
from pathlib import Path
from airflow_ai_provider.execution import warm_runtime
argv, env, root = json.loads(sys.argv[1])
job = warm_runtime.start_job(argv, env, root=Path(root), idle_seconds=60)
print(job.pid, flush=True)
time.sleep(300)
"""


def test_a_job_ends_when_its_client_is_killed_with_sigkill(warm_root, tmp_path):
    argv, env = probe(tmp_path, "orphan", sleep=True)
    payload = json.dumps([argv, {**os.environ, **env}, str(warm_root / "warm-runtime")])
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, payload], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        job_pid = int(client.stdout.readline())
        seen = report(tmp_path, "orphan")
        assert seen["pid"] == job_pid and running(seen["grandchild"])
        client.kill()
        client.wait(timeout=10)
        wait_for(
            lambda: not running(job_pid) and not running(seen["grandchild"]),
            timeout=15,
            what="the job to end",
        )
    finally:
        client.kill()
        client.wait(timeout=10)
        client.stdout.close()
    assert servers_under(warm_root), "the server itself stays up for the next job"


def test_jobs_see_only_their_own_environment_and_temporary_folder(warm_root, tmp_path):
    argv, env = probe(tmp_path, "a", AI_TEST_SECRET="s3cr3t-of-job-a")
    runner_a, _, _ = run_job(argv, warm_root, env)
    argv, env = probe(tmp_path, "b")
    runner_b, _, _ = run_job(argv, warm_root, env)
    job_a, job_b = report(tmp_path, "a"), report(tmp_path, "b")

    assert runner_a.process.server_pid == runner_b.process.server_pid
    assert job_a["env"]["AI_TEST_SECRET"] == "s3cr3t-of-job-a"
    assert "AI_TEST_SECRET" not in job_b["env"]
    assert b"s3cr3t" not in Path(f"/proc/{runner_b.process.server_pid}/environ").read_bytes()
    assert (job_a["env"][MARKER_ENV], job_b["env"][MARKER_ENV]) == (runner_a.marker, runner_b.marker)
    assert job_a["tempdir"] == str(runner_a.scratch / "tmp") == job_a["env"]["TMPDIR"]
    assert job_b["tempdir"] == str(runner_b.scratch / "tmp") != job_a["tempdir"]


def test_concurrent_first_jobs_start_exactly_one_server(warm_root):
    runs: list[tuple[LocalJobRunner, Any, list[logging.LogRecord]]] = []
    run_at_once(lambda: runs.append(run_job(BAD_SPEC, warm_root)), 3)

    assert len(runs) == 3
    assert all(result["status"] == "failed" for _, result, _ in runs)
    assert len({runner.process.server_pid for runner, _, _ in runs}) == 1
    assert len(servers_under(warm_root)) == 1
    assert not [r for _, _, log in runs for r in log if r.levelno >= logging.WARNING]


def test_a_server_whose_imported_files_changed_is_replaced(warm_root, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('"""Imported by every interpreter started with this path."""\n')
    env = {"PYTHONPATH": str(site)}
    old, _, _ = run_job(BAD_SPEC, warm_root, env)
    (site / "sitecustomize.py").write_text('"""Upgraded."""\nUPGRADED = True\n')
    new, result, log = run_job(BAD_SPEC, warm_root, env)

    assert isinstance(new.process, warm_runtime.WarmJob)
    assert new.process.server_pid != old.process.server_pid
    assert result["status"] == "failed" and result["error"] == BAD_SPEC_ERROR
    assert not [r for r in log if r.levelno >= logging.WARNING]
    wait_for(lambda: not running(old.process.server_pid), timeout=15, what="the stale server to exit")
    assert servers_under(warm_root) == [new.process.server_pid]


def test_an_idle_server_exits_and_removes_its_socket(warm_root, monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME_IDLE_SECONDS", "1")
    runner, _, _ = run_job(BAD_SPEC, warm_root)
    folder = warm_root / warm_runtime.FOLDER
    assert isinstance(runner.process, warm_runtime.WarmJob)
    assert folder.stat().st_mode & 0o777 == 0o700
    (socket_path,) = folder.glob("*.sock")
    assert socket_path.stat().st_mode & 0o777 == 0o600

    wait_for(lambda: not running(runner.process.server_pid), timeout=30, what="the idle server to exit")
    assert not socket_path.exists()


def test_bad_input_through_the_warm_runtime_is_exit_code_2_with_one_error_line_and_not_retryable(warm_root):
    runner, result, log = run_job(BAD_SPEC, warm_root)

    assert isinstance(runner.process, warm_runtime.WarmJob)
    assert runner.process.returncode == 2
    assert result["status"] == "failed" and result["retryable"] is False
    assert result["error"] == BAD_SPEC_ERROR
    errors = [r.getMessage() for r in log if r.getMessage().startswith("airflow-ai-runtime error: ")]
    assert errors == [f"airflow-ai-runtime error: {BAD_SPEC_ERROR}"]


def test_a_job_runs_as_a_new_process_with_one_warning_when_the_server_cannot_start(warm_root, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"if {warm_runtime.SERVER_MODULE!r} in sys.orig_argv:\n"
        "    sys.exit('no warm server in this image')\n"
    )
    runner, result, log = run_job(BAD_SPEC, warm_root, {"PYTHONPATH": f"{site}:{REPO_ROOT}"})

    assert isinstance(runner.process, subprocess.Popen)
    assert result["status"] == "failed" and result["error"] == BAD_SPEC_ERROR
    warnings = [r.getMessage() for r in log if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no warm server in this image" in warnings[0], warnings
    assert warnings[0].startswith("Warm runtime not used, starting the runtime as a new process")


def test_an_interpreter_that_is_a_script_runs_every_job_itself_without_a_server(warm_root, tmp_path):
    python = tmp_path / "wrapped-python"
    python.write_text(
        f'#!/bin/bash\necho "wrapper ran for $3" >> {tmp_path}/wrapper.log\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    for _ in range(2):
        runner, result, log = run_job([str(python), *BAD_SPEC[1:]], warm_root)
        assert isinstance(runner.process, subprocess.Popen)
        assert result["status"] == "failed" and result["error"] == BAD_SPEC_ERROR
        assert not [r for r in log if r.levelno >= logging.WARNING]

    assert (tmp_path / "wrapper.log").read_text().splitlines() == ["wrapper ran for infer"] * 2
    assert servers_under(warm_root) == []
