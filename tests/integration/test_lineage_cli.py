"""``airflow-ai lineage`` as installed, over records the real operators wrote in real DAG runs.

Against a real ``mlflow server`` and moto S3: data validation, the quality gate, the promotion and
sharded batch inference run as DAGs (``dag.test()``); the model version is trained in-process by the
churn sample and given the lineage tags a training task sets, and champion moves on to a newer
version after the scoring. The console script then runs as a subprocess with the same
``AIRFLOW_HOME``, so the DAG-run states come from Airflow's database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests._support.airflow_records import dag_run_mlflow_runs
from tests._support.churn_sample import train_and_register, write_customers

SUITE = Path(__file__).resolve().parents[2] / "dag_templates" / "include" / "churn_expectations.json"
SCRIPT = Path(sys.executable).parent / "airflow-ai"
TRAINING = ("churn_retrain", "manual__lineage")


@pytest.fixture
def airflow_env(monkeypatch, mlflow_connection, aws_connection, s3_server, s3_bucket, tmp_path):
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    s3_server.client().put_object(
        Bucket=s3_bucket, Key="suites/churn_expectations.json", Body=SUITE.read_bytes()
    )
    return tmp_path


def _lineage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), "lineage", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def test_installed_command_walks_predictions_back_through_real_dag_runs(
    airflow_env, mlflow_server, s3_server, s3_bucket, monkeypatch
):
    from mlflow import MlflowClient

    from tests.dags.ai_test_dags import s3_batch_inference
    from tests.dags.evaluation_dags import evaluation_gate
    from tests.dags.promotion_dags import promote_then_check
    from tests.dags.validation_dags import s3_data_validation

    client = MlflowClient(tracking_uri=mlflow_server.url)
    storage = {"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"}
    data_uri = f"s3://{s3_bucket}/customers"
    write_customers(data_uri, 4000, seed=21, n_files=2, storage_options=storage)
    validated = s3_data_validation().test()
    (validation_run,) = dag_run_mlflow_runs(
        mlflow_server.url, validated.run_id, experiment_name="airflow/s3_data_validation", role="task"
    )
    digest = validation_run.data.tags["ai.input_digest"]

    name = f"lineage-{uuid.uuid4().hex[:8]}"
    model = train_and_register(mlflow_server.url, name, alias="challenger", n_rows=4000, seed=2)
    version = str(model["version"])
    training_tags = {
        "airflow.dag_id": TRAINING[0],
        "airflow.run_id": TRAINING[1],
        "airflow.task_id": "train",
        "ai.training_data_digest": digest,
        "ai.training_data_uri": data_uri,
        "ai.code_reference": "dag_templates.include.churn_training:train",
    }
    for key, value in training_tags.items():
        client.set_model_version_tag(name, version, key, value)

    write_customers(airflow_env / "holdout", 3000, seed=12, with_label=True)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{name}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(airflow_env / "holdout"))
    gated = evaluation_gate().test()
    monkeypatch.setenv("AI_TEST_MODEL", name)
    promoted = promote_then_check().test()
    monkeypatch.setenv("AI_TEST_MODEL", f"{name}@champion")
    monkeypatch.setenv("AI_TEST_INPUT", f"{data_uri}/")
    scored = s3_batch_inference().test()
    # After the scoring, champion moves on to a newer version: the predictions keep their version.
    newer = client.create_model_version(name, source="s3://nowhere/model").version
    client.set_registered_model_alias(name, "champion", newer)

    part = f"s3://{s3_bucket}/predictions/{scored.run_id}/part-00001-of-00002.parquet"
    done = _lineage(part)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert lines[0].startswith(f"predictions {part} (") and lines[0].endswith(" rows)")
    assert f"<- inference DAG s3_batch_inference run {scored.run_id} task score[1] (success)" in lines[1]
    assert lines[2].startswith(
        f"<- model {name} version {version} (used by the inference; alias champion pointed to version "
        f"{version} at inference time (pinned for its DAG run); champion has moved since; aliases now: "
    )
    assert f"version {newer}" not in lines[2]
    assert lines[3] == (
        f"<- training DAG {TRAINING[0]} run {TRAINING[1]} task train, "
        "code dag_templates.include.churn_training:train"
    )
    assert lines[4] == f"<- data {data_uri} digest {digest}"
    assert lines[5].startswith(
        f"<- validation suite churn_customers: success (17/17), DAG s3_data_validation run {validated.run_id}"
    )
    assert lines[6].startswith("<- quality gate decision promote: no champion yet: absolute thresholds only")
    assert f"DAG evaluation_gate run {gated.run_id}" in lines[6]
    assert lines[7] == "<- approval no approval step (promoted without a human approval task)"
    assert lines[8].startswith(f"<- promotion champion moved none -> {version} at ")
    assert f"by DAG promote_then_check run {promoted.run_id}" in lines[8]
    assert lines[9] == (
        f"DAG runs: s3_data_validation/{validated.run_id} success; "
        f"{TRAINING[0]}/{TRAINING[1]} not in Airflow DB; evaluation_gate/{gated.run_id} success; "
        f"promote_then_check/{promoted.run_id} success; s3_batch_inference/{scored.run_id} success"
    )

    # The rows printed are the rows the shard wrote.
    import pyarrow.parquet as pq
    from pyarrow import fs

    s3 = fs.S3FileSystem(
        endpoint_override=s3_server.endpoint_url,
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )
    written = pq.read_metadata(part.removeprefix("s3://"), filesystem=s3).num_rows
    assert lines[0] == f"predictions {part} ({written} rows)"

    # The reverse: what used the version. Both shards of the scoring, their DAG run and Asset events.
    import json

    reverse = _lineage("--downstream", f"{name}/{version}", "--json")
    assert (reverse.returncode, reverse.stderr) == (0, ""), reverse.stdout + reverse.stderr
    used = json.loads(reverse.stdout)
    assert sorted(out["task"] for out in used["outputs"]) == ["score[0]", "score[1]"]
    assert {(out["dag_id"], out["run_id"], out["state"]) for out in used["outputs"]} == {
        ("s3_batch_inference", scored.run_id, "success")
    }
    files = sorted(file for out in used["outputs"] for file in out["files"])
    assert part in files and len(files) == 2
    total = sum(pq.read_metadata(f.removeprefix("s3://"), filesystem=s3).num_rows for f in files)
    assert used["rows"] == total
    assert used["dag_runs"] == [{"dag_id": "s3_batch_inference", "run_id": scored.run_id, "state": "success"}]
    events = used["asset_events"]
    assert sorted(event["source_task"] for event in events) == ["score[0]", "score[1]"]
    assert {event["source_run_id"] for event in events} == {scored.run_id}
    assert sum(event["rows"] for event in events) == total
    text = _lineage("--downstream", f"models:/{name}/{version}")
    assert text.returncode == 0 and text.stdout.splitlines()[0] == (
        f"model {name} version {version}: 2 inference output(s), {total} rows, 1 DAG run(s)"
    )
    assert (
        _lineage("--downstream", f"{name}/{newer}")
        .stdout.splitlines()[0]
        .endswith(": 0 inference output(s), 0 rows, 0 DAG run(s)")
    )

    unknown = _lineage(f"s3://{s3_bucket}/predictions/nobody/part-00000-of-00001.parquet")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1
    assert f"no inference task recorded output s3://{s3_bucket}/predictions/nobody/" in unknown.stderr
    assert f"(MLflow at {mlflow_server.url})" in unknown.stderr
