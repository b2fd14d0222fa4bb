"""Secret-leak probes through a real Airflow DAG (``dag.test()``), a real ``mlflow server`` and the real
runtime in local mode.

Each probe plants a unique secret (``s3cr3t-<uuid>``) in a connection or a templated argument, runs the
DAG, and looks for it everywhere it could land: the runtime's command line (the job spec, what a pod's
arguments would hold), the task log, XCom, the rendered template fields, and the params, tags and
``job_result.json`` of every MLflow run of the DAG.
"""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import train_and_register, write_customers

DAG_ID = "secret_leaks"
MODEL = "churn_secret_probe"

_RECORDING_PYTHON = """#!/bin/bash
# Records the runtime's command line and the MLflow variables it gets, then runs it.
printf '%s\\n' "$@" >> "{argv}"
env | grep '^MLFLOW_TRACKING_' >> "{env}" || true
exec "{python}" "$@"
"""


@pytest.fixture(scope="module")
def registered_model(mlflow_server) -> dict:
    return train_and_register(mlflow_server.url, MODEL, alias="champion", n_rows=2_000)


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture
def probe_env(monkeypatch, tmp_path, airflow_db) -> dict:
    """Scoring data, and an interpreter for ``python=`` that records what the runtime was given."""
    write_customers(str(tmp_path / "scoring"), 300, seed=3)
    paths = {"argv": tmp_path / "argv.txt", "env": tmp_path / "env.txt"}
    script = tmp_path / "recording-python"
    script.write_text(_RECORDING_PYTHON.format(python=sys.executable, **paths))
    script.chmod(0o755)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL", f"{MODEL}@champion")
    monkeypatch.setenv("AI_TEST_PYTHON", str(script))
    return paths


def _run(monkeypatch, **kwargs):
    from tests.dags.secret_leak_dags import secret_leaks

    monkeypatch.setenv("AI_TEST_OPERATOR_KWARGS", json.dumps(kwargs))
    return secret_leaks().test()


def _airflow_records(run_id: str, dag_id: str = DAG_ID) -> str:
    """Every XCom value and rendered template field of the DAG run, as one text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id)).all()
        rendered = session.scalars(
            select(RenderedTaskInstanceFields.rendered_fields).where(
                RenderedTaskInstanceFields.run_id == run_id
            )
        ).all()
        return json.dumps([XComModel.deserialize_value(x) for x in xcoms] + list(rendered), default=str)


def _mlflow_records(mlflow_url: str, run_id: str, dag_id: str = DAG_ID) -> tuple[list, str]:
    """The DAG run's MLflow runs, and their params, tags and ``job_result.json`` as one text."""
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url)
    runs = dag_run_mlflow_runs(mlflow_url, run_id, experiment_name=f"airflow/{dag_id}", include_deleted=True)
    texts = [json.dumps([run.data.params, run.data.tags]) for run in runs]
    for run in runs:
        if any(a.path == "job_result.json" for a in client.list_artifacts(run.info.run_id)):
            with tempfile.TemporaryDirectory() as folder:
                texts.append(
                    Path(client.download_artifacts(run.info.run_id, "job_result.json", folder)).read_text()
                )
    return runs, "\n".join(texts)


def test_mlflow_connection_credentials_reach_the_runtime_only_by_environment(
    registered_model, mlflow_server, probe_env, monkeypatch, capfd, secret
):
    """Password in the connection's host URI and in its ``registry_uri`` extra, and a bearer token."""
    host = mlflow_server.url.replace("http://", f"http://alice:{secret}@")
    connection = {
        "conn_type": "mlflow",
        "host": host,
        "extra": {"registry_uri": host, "token": f"{secret}-tok"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(connection))

    dag_run = _run(monkeypatch)

    log = capfd.readouterr().out
    assert dag_run.state == "success", log[-3000:]
    runs, mlflow_text = _mlflow_records(mlflow_server.url, dag_run.run_id)
    assert len(runs) == 2 and '"status": "success"' in mlflow_text  # the parent run and the task's
    argv = probe_env["argv"].read_text()
    assert f'"tracking_uri":"{mlflow_server.url}"' in argv  # the spec names the server, without userinfo
    for where, text in {"job spec": argv, "task log": log, "airflow": _airflow_records(dag_run.run_id),
                        "mlflow": mlflow_text}.items():  # fmt: skip
        assert secret not in text, f"the secret leaked into the {where}"
    env = probe_env["env"].read_text().splitlines()
    assert f"MLFLOW_TRACKING_PASSWORD={secret}" in env and f"MLFLOW_TRACKING_TOKEN={secret}-tok" in env


PLANTED = {
    "input_uri userinfo": (
        "input_uri",
        "s3://AKIAIOSFODNN7EXAMPLE:{s}@data/scoring/",
        "'s3://data/scoring/'",
    ),
    "output_uri query token": ("output_uri", "s3://data/predictions/?token={s}", "'s3://data/predictions/'"),
    "presigned S3 URL as input": (
        "input_uri",
        "https://data.s3.amazonaws.com/x.parquet?X-Amz-Credential=AKIA%2F20250101&X-Amz-Signature={s}",
        "'https://data.s3.amazonaws.com/x.parquet'",
    ),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_templated_uri_with_credentials_fails_once_and_leaks_nowhere(
    case, registered_model, mlflow_server, mlflow_connection, probe_env, monkeypatch, capfd, secret
):
    argument, planted, shown = PLANTED[case]
    monkeypatch.setenv("AIRFLOW_VAR_PROBE_URI", planted.format(s=secret))

    dag_run = _run(monkeypatch, **{argument: "{{ var.value.probe_uri }}"})

    log = capfd.readouterr().out
    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]  # bad input: two retries were allowed, none was used
    assert f"score: {argument}={shown} carries credentials" in log
    runs, mlflow_text = _mlflow_records(mlflow_server.url, dag_run.run_id)
    assert runs == []  # refused before any MLflow run was booked
    assert not probe_env["argv"].exists()  # and before the runtime started
    assert secret not in log, "the secret leaked into the task log"
    assert secret not in _airflow_records(dag_run.run_id), "the secret leaked into XCom or rendered fields"


def test_mapped_input_with_credentials_fails_when_the_task_starts_and_leaks_nowhere(
    registered_model, mlflow_server, mlflow_connection, probe_env, monkeypatch, capfd, secret, tmp_path
):
    """``.expand()`` arguments are not seen at parse; the operator built for the mapped task refuses them."""
    from tests.dags.secret_leak_dags import secret_leaks_mapped

    uris = [str(tmp_path / "scoring"), f"s3://AKIAIOSFODNN7EXAMPLE:{secret}@data/scoring/"]
    monkeypatch.setenv("AI_TEST_EXPAND_URIS", json.dumps(uris))

    dag_run = secret_leaks_mapped().test()

    log = capfd.readouterr().out
    assert "score: input_uri='s3://data/scoring/' carries credentials" in log
    assert task_tries(dag_run.run_id) == [1, 1]  # the clean shard ran once; the other failed without retry
    assert dag_run.state == "failed"
    runs, mlflow_text = _mlflow_records(mlflow_server.url, dag_run.run_id, "secret_leaks_mapped")
    assert len(runs) == 2  # the parent run and the clean shard's run: none for the refused shard
    assert secret not in log and secret not in mlflow_text
    assert secret not in probe_env["argv"].read_text()
    assert secret not in _airflow_records(dag_run.run_id, "secret_leaks_mapped")
