"""The runtime command line, run as a subprocess: spec sources, result file and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from airflow_ai_provider.runtime import __main__ as cli
from tests.unit.runtime.conftest import closed_port, customers, write_parquet

REPO = Path(__file__).resolve().parents[3]


def run_cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "airflow_ai_provider.runtime", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_stderr_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.strip().splitlines()[-1]


def read_result(path: Path) -> dict[str, Any]:
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], "no temp file left"
    return json.loads(path.read_text())


def test_success_writes_result_and_output_and_exits_0(registry, tmp_path):
    source = write_parquet(tmp_path / "in" / "data.parquet", customers(3000, seed=1), row_group_size=1000)
    spec = registry.spec("churn", f"file://{tmp_path}/in", tmp_path / "out", shard={"index": 1, "count": 2})
    result_path = tmp_path / "xcom" / "return.json"

    done = run_cli(["infer", "--spec-json", spec.to_json(), "--result-path", str(result_path)])

    assert done.returncode == 0, done.stderr
    assert "loaded model churn version 1" in done.stdout
    assert "shard 1/2: 2 row groups from 1 files" in done.stdout
    result = read_result(result_path)
    assert result["status"] == "success" and result["error"] is None and result["retryable"] is False
    assert result["rows_in"] == result["rows_out"] == 2000
    output = result["outputs"][0]
    assert output["uri"] == f"file://{tmp_path}/out/part-00001-of-00002.parquet"
    assert f"wrote {output['uri']} (2000 rows" in done.stdout
    assert pd.read_parquet(tmp_path / "out" / "part-00001-of-00002.parquet")["customer_id"].tolist() == list(
        range(1000, 3000)
    )
    assert result["inputs"][0]["uri"] == f"file://{source}"


def test_spec_and_result_path_come_from_the_environment(registry, tmp_path):
    spec = registry.spec("churn", str(tmp_path / "missing.parquet"), tmp_path / "out")
    result_path = tmp_path / "result.json"

    done = run_cli(
        ["infer"], env={"AI_PROVIDER_JOB_SPEC": spec.to_json(), "AI_PROVIDER_RESULT_PATH": str(result_path)}
    )

    assert done.returncode == 2
    message = f"input not found: {tmp_path}/missing.parquet"
    assert last_stderr_line(done) == f"airflow-ai-runtime error: {message}"
    result = read_result(result_path)
    assert result["status"] == "failed"
    assert (result["error"], result["error_type"], result["retryable"]) == (message, "JobInputError", False)
    assert result["model"]["name"] == "churn" and result["shard"] == {"index": 0, "count": 1}


def test_spec_file_with_unknown_model_exits_2(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(registry.spec("ghost", str(source), tmp_path / "out").to_json())

    done = run_cli(["infer", "--spec-file", str(spec_file), "--result-path", str(tmp_path / "r.json")])

    assert done.returncode == 2
    assert last_stderr_line(done) == (
        f"airflow-ai-runtime error: registered model 'ghost' does not exist in {registry.tracking_uri}"
    )
    assert read_result(tmp_path / "r.json")["error_type"] == "JobInputError"


def test_unreachable_mlflow_exits_3_within_seconds(registry, tmp_path):
    source = write_parquet(tmp_path / "in.parquet", customers(10))
    uri = f"http://127.0.0.1:{closed_port()}"
    spec = registry.spec("churn", str(source), tmp_path / "out", tracking_uri=uri)

    started = time.monotonic()
    done = run_cli(
        ["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "r.json")], timeout=30
    )

    assert time.monotonic() - started < 15
    assert done.returncode == 3
    assert last_stderr_line(done).startswith(
        f"airflow-ai-runtime error: MLflow tracking server unreachable at {uri}"
    )
    result = read_result(tmp_path / "r.json")
    assert (result["status"], result["error_type"], result["retryable"]) == (
        "failed",
        "JobServiceError",
        True,
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_mistyped_column_exits_2_with_one_line_message(registry, tmp_path):
    frame = customers(10)
    frame["income"] = frame["income"].astype(str)
    source = write_parquet(tmp_path / "in.parquet", frame)
    spec = registry.spec("churn", str(source), tmp_path / "out")

    done = run_cli(["infer", "--spec-json", spec.to_json(), "--result-path", str(tmp_path / "r.json")])

    assert done.returncode == 2
    assert last_stderr_line(done).endswith("column 'income' is string, model expects double")
    assert read_result(tmp_path / "r.json")["error"].endswith(
        "column 'income' is string, model expects double"
    )


def test_job_name_must_match_the_spec(tmp_path, capsys):
    spec = {"job": "infer", "model": {"name": "m", "version": "1"}, "inputs": ["x"], "output": "y"}
    spec["mlflow"] = {"tracking_uri": "sqlite:///x.db"}

    code = cli.main(["train", "--spec-json", json.dumps(spec), "--result-path", str(tmp_path / "r.json")])

    assert code == 2
    error = "job 'train' was requested but the spec is for job 'infer'"
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"airflow-ai-runtime error: {error}"
    assert read_result(tmp_path / "r.json")["job"] == "train"


def test_invalid_spec_json_exits_2(tmp_path):
    code = cli.main(["infer", "--spec-json", "{not json", "--result-path", str(tmp_path / "r.json")])
    assert code == 2
    assert read_result(tmp_path / "r.json")["error"].startswith("job spec is not valid JSON")


def test_unexpected_error_exits_1_with_a_one_line_error(tmp_path, monkeypatch, capsys):
    def explode(spec):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(cli, "job_runner", lambda job: explode)
    spec = {"job": "infer", "model": {"name": "m", "version": "1"}, "inputs": ["x"], "output": "y"}
    spec["mlflow"] = {"tracking_uri": "sqlite:///x.db"}

    code = cli.main(["infer", "--spec-json", json.dumps(spec), "--result-path", str(tmp_path / "r.json")])

    assert code == 1
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "airflow-ai-runtime error: RuntimeError: disk on fire second line"
    )
    result = read_result(tmp_path / "r.json")
    assert (result["status"], result["error_type"], result["retryable"]) == ("failed", "RuntimeError", False)


def test_result_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "return.json"
    path.write_text("old")
    cli.write_json_atomic(str(path), {"status": "success"})
    assert read_result(path) == {"status": "success"}


def _standalone_with_atexit(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the runtime as ``python -m`` does, with an ``atexit`` handler registered before the job."""
    flag = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(lambda: pathlib.Path({str(flag)!r}).write_text('ran'))\n"
        "from airflow_ai_provider.runtime.__main__ import run_standalone\n"
        "run_standalone(sys.argv[1:])\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    environment.update(env or {})
    result = tmp_path / "r.json"
    return subprocess.run(
        [sys.executable, "-c", code, "infer", "--spec-json", "{not json", "--result-path", str(result)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runtime_ends_without_interpreter_teardown_once_the_result_is_written(tmp_path):
    done = _standalone_with_atexit(tmp_path)

    assert done.returncode == 2, done.stderr
    assert last_stderr_line(done).startswith("airflow-ai-runtime error: job spec is not valid JSON")
    assert read_result(tmp_path / "r.json")["status"] == "failed"
    assert not (tmp_path / "atexit-ran").exists(), "atexit handlers ran: the process was torn down"


def test_full_exit_option_keeps_the_normal_interpreter_shutdown(tmp_path):
    done = _standalone_with_atexit(tmp_path, {"AI_PROVIDER_RUNTIME_FULL_EXIT": "1"})

    assert done.returncode == 2, done.stderr
    assert read_result(tmp_path / "r.json")["status"] == "failed"
    assert (tmp_path / "atexit-ran").read_text() == "ran"
