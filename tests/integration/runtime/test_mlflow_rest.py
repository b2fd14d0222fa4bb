"""The runtime's MLflow calls without MLflow's client, against a real ``mlflow server``: text artifacts
of a run and a model version lookup, with the same errors as the client path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_ai_provider.runtime import mlflow_rest, tracking
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from tests.unit.runtime.conftest import closed_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def run_id(mlflow_server) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("rest-texts") or client.get_experiment(
        client.create_experiment("rest-texts")
    )
    return client.create_run(experiment.experiment_id).info.run_id


def test_texts_reach_the_runs_artifacts(mlflow_server, run_id, tmp_path):
    from mlflow import MlflowClient

    ref = MlflowRef(tracking_uri=mlflow_server.url, run_id=run_id)
    tracking.log_texts(ref, {"report.json": '{"ok": true}', "sub/report.html": "<p>ok</p>"}, "cannot log")

    client = MlflowClient(tracking_uri=mlflow_server.url)
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    assert (local / "report.json").read_text() == '{"ok": true}'
    assert (local / "sub" / "report.html").read_text() == "<p>ok</p>"


def test_an_unknown_run_is_bad_input_naming_it(mlflow_server):
    ref = MlflowRef(tracking_uri=mlflow_server.url, run_id="0" * 32)
    with pytest.raises(JobInputError, match=f"MLflow run {'0' * 32} does not exist in {mlflow_server.url}"):
        tracking.log_texts(ref, {"a.txt": "a"}, "cannot log")


def test_a_server_that_is_down_is_retryable_within_seconds(monkeypatch):
    monkeypatch.setenv("AI_PROVIDER_SERVICE_TIMEOUT", "4")
    ref = MlflowRef(tracking_uri=f"http://127.0.0.1:{closed_port()}", run_id="1" * 32)
    started = time.monotonic()
    with pytest.raises(JobServiceError):
        tracking.log_texts(ref, {"a.txt": "a"}, "cannot log")
    assert time.monotonic() - started < 30


def test_a_version_lookup_answers_the_record_or_none(mlflow_server):
    from tests._support.churn_sample import train_and_register

    model = train_and_register(mlflow_server.url, "rest-lookup", alias=None, n_rows=500, max_iter=2)
    ref = MlflowRef(tracking_uri=mlflow_server.url)

    record = mlflow_rest.model_version(ref, "rest-lookup", str(model["version"]))
    assert record is not None and record["run_id"] == model["run_id"] and record["source"]
    assert mlflow_rest.model_version(ref, "rest-lookup", "999") is None
    assert mlflow_rest.model_version(ref, "no-such-model", "1") is None
    assert mlflow_rest.model_version(MlflowRef(tracking_uri="sqlite:///x.db"), "rest-lookup", "1") is None


def test_logging_texts_imports_no_mlflow(mlflow_server, run_id):
    code = (
        "import sys\n"
        "from airflow_ai_provider.runtime import tracking\n"
        "from airflow_ai_provider.runtime.contract.spec import MlflowRef\n"
        f"tracking.log_texts(MlflowRef(tracking_uri={mlflow_server.url!r}, run_id={run_id!r}), "
        "{'a.txt': 'a'}, 'cannot log')\n"
        "print('mlflow' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False"
