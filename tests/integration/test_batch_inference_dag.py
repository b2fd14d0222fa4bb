"""Batch inference end to end: a real Airflow DAG (``dag.test()``), a real ``mlflow server`` and a
real S3-compatible server (moto), in local execution mode, sharded with dynamic task mapping."""

from __future__ import annotations

import io
import json
import re

import mlflow.pyfunc
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import make_customers, train_and_register, write_customers

ROWS = 30_000
SHARDS = 2


@pytest.fixture(scope="module")
def registered_churn(mlflow_server) -> dict:
    model = train_and_register(mlflow_server.url, "churn", alias="champion", n_rows=5_000)
    return {**model, "version": str(model["version"])}


@pytest.fixture
def airflow_env(monkeypatch, mlflow_connection, aws_connection, s3_server, s3_bucket):
    """Connections as a deployment would define them; the worker itself has no AWS credentials."""
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_SHARDS", str(SHARDS))
    write_customers(
        f"s3://{s3_bucket}/scoring",
        ROWS,
        seed=7,
        n_files=2,
        storage_options={"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"},
    )
    return s3_bucket


def _read_outputs(s3_server, bucket: str, run_id: str) -> tuple[list[str], pd.DataFrame]:
    client = s3_server.client()
    prefix = f"predictions/{run_id}/"
    keys = sorted(
        obj["Key"] for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    )
    frames = [
        pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read())) for key in keys
    ]
    return keys, pd.concat([frame.to_pandas() for frame in frames], ignore_index=True)


def test_sharded_inference_reads_and_writes_s3_and_records_mlflow(
    airflow_env, registered_churn, mlflow_server, s3_server, monkeypatch
):
    import mlflow
    from mlflow import MlflowClient

    from airflow_ai_provider.links import MlflowRunLink
    from tests._support.airflow_records import dag_run_outcomes
    from tests.dags.ai_test_dags import s3_batch_inference

    dag_run = s3_batch_inference().test()
    assert dag_run.state == "success"

    # Outputs: one part per shard, disjoint and complete, equal to the model's own predictions.
    keys, predictions = _read_outputs(s3_server, airflow_env, dag_run.run_id)
    assert [key.rsplit("/", 1)[1] for key in keys] == [
        f"part-0000{i}-of-0000{SHARDS}.parquet" for i in range(SHARDS)
    ]
    expected = make_customers(ROWS, seed=7, with_label=False)
    assert len(predictions) == ROWS
    assert predictions["customer_id"].is_unique
    merged = expected.merge(predictions, on="customer_id")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    model = mlflow.pyfunc.load_model(registered_churn["model_uri"])
    features = merged[[c for c in expected.columns if c != "customer_id"]]
    assert (model.predict(features) == merged["prediction"].to_numpy()).all()
    assert merged["confidence"].between(0.5, 1.0).all()

    # XCom results: pinned version, checksums, and the MLflow run.
    outcomes = dag_run_outcomes(dag_run.dag_id, dag_run.run_id)
    results = [outcome.result for outcome in outcomes if outcome.task_id == "score"]
    assert len(results) == SHARDS
    assert {r["model"]["version"] for r in results} == {registered_churn["version"]}
    assert sum(r["rows_out"] for r in results) == ROWS
    assert all(len(out["sha256"]) == 64 for r in results for out in r["outputs"])

    # MLflow: one parent run per DAG run, one nested run per shard with metrics, dataset and tags.
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("airflow/s3_batch_inference")
    parents = client.search_runs([experiment.experiment_id], "tags.`airflow.role` = 'dag_run'")
    children = client.search_runs([experiment.experiment_id], "tags.`airflow.role` = 'task'")
    assert len(parents) == 1 and len(children) == SHARDS
    parent = parents[0]
    assert parent.data.tags["airflow.run_id"] == dag_run.run_id
    assert parent.data.params["pinned_model/churn/champion"] == registered_churn["version"]
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parent.info.run_id}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["rows_out"] > 0
        assert child.data.metrics["rows_per_s"] > 0
        assert child.data.metrics["peak_rss_mb"] > 0
        assert child.data.tags["ai.model_version"] == registered_churn["version"]
        assert child.data.tags["ai.output_uri"].startswith(f"s3://{airflow_env}/predictions/")
        (dataset_input,) = child.inputs.dataset_inputs
        assert dataset_input.dataset.digest
        assert f"s3://{airflow_env}/scoring/" in dataset_input.dataset.source

    # Extra link: pushed by the worker when the task ended, pointing at the task's own run.
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        links = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, key=MlflowRunLink().xcom_key)
        ).all()
        urls = {XComModel.deserialize_value(row) for row in links}
    assert urls == {
        f"{mlflow_server.url}/#/experiments/{experiment.experiment_id}/runs/{c.info.run_id}" for c in children
    }


def test_predictions_asset_event_carries_model_version_run_and_rows(airflow_env, registered_churn):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.dags.ai_test_dags import s3_batch_inference

    dag_run = s3_batch_inference().test()
    assert dag_run.state == "success"
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(
                AssetModel.name == f"predictions-{airflow_env}", AssetEvent.source_run_id == dag_run.run_id
            )
        ).all()
        extras = [event.extra for event in events]
    assert len(extras) == SHARDS
    assert {extra["model_version"] for extra in extras} == {registered_churn["version"]}
    assert sum(extra["row_count"] for extra in extras) == ROWS
    assert all(extra["mlflow_run_id"] and extra["output_uri"].startswith("s3://") for extra in extras)
    assert {extra["shard"] for extra in extras} == {f"{i}/{SHARDS}" for i in range(SHARDS)}


def test_missing_input_fails_without_retrying_and_writes_nothing(
    airflow_env, registered_churn, s3_server, monkeypatch, capfd
):

    from tests.dags.ai_test_dags import s3_batch_inference

    missing = f"s3://{airflow_env}/nothing-here/"
    monkeypatch.setenv("AI_TEST_INPUT", missing)
    monkeypatch.setenv("AI_TEST_RETRIES", "3")
    dag_run = s3_batch_inference().test()
    assert dag_run.state == "failed"
    assert set(task_tries(dag_run.run_id)) == {1}  # bad input is not retried
    assert f"infer job failed: input not found: {missing}" in capfd.readouterr().out
    listing = s3_server.client().list_objects_v2(Bucket=airflow_env, Prefix="predictions/")
    assert listing.get("KeyCount", 0) == 0


def test_retry_replaces_its_own_output_and_reuses_the_mlflow_run(
    registered_churn, mlflow_server, mlflow_connection, flaky_python, tmp_path, monkeypatch
):
    from tests.dags.ai_test_dags import retried_inference

    write_customers(str(tmp_path / "scoring"), 5_000, seed=3)
    monkeypatch.setenv("AI_TEST_FAKE_PYTHON", flaky_python)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))

    dag_run = retried_inference().test()
    assert dag_run.state == "success"
    assert task_tries(dag_run.run_id) == [2]
    parts = sorted((tmp_path / "predictions" / dag_run.run_id).iterdir())
    assert [part.name for part in parts] == ["part-00000-of-00001.parquet"]
    assert pq.read_metadata(parts[0]).num_rows == 5_000
    runs = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name="airflow/retried_inference", role="task"
    )
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["airflow.try_number"] == "2"


class _UnloadableModel(mlflow.pyfunc.PythonModel):
    """Stands for a model whose artifact is broken: loading it raises."""

    def load_context(self, context):
        raise RuntimeError("weights file is corrupt")

    def predict(self, context, model_input, params=None):
        return model_input


def test_unloadable_model_falls_back_to_previous_champion_and_says_so(
    airflow_env, registered_churn, mlflow_server, monkeypatch
):
    from mlflow import MlflowClient

    from tests._support.airflow_records import dag_run_outcomes
    from tests._support.churn_sample import mlflow_uris
    from tests.dags.ai_test_dags import s3_batch_inference

    with mlflow_uris(mlflow_server.url):
        mlflow.set_experiment("broken-models")
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_UnloadableModel(),
                pip_requirements=["mlflow"],
                registered_model_name="churn",
            )
    client = MlflowClient(tracking_uri=mlflow_server.url)
    broken_version = str(info.registered_model_version)
    client.set_registered_model_alias("churn", "broken", broken_version)
    monkeypatch.setenv("AI_TEST_MODEL", "churn@broken")
    monkeypatch.setenv("AI_TEST_FALLBACK", "churn@champion")
    monkeypatch.setenv("AI_TEST_SHARDS", "1")

    dag_run = s3_batch_inference().test()
    assert dag_run.state == "success"
    (outcome,) = dag_run_outcomes(dag_run.dag_id, dag_run.run_id)
    result = outcome.result
    assert result["model"]["version"] == registered_churn["version"]
    assert result["fallback"]["used"] is True
    assert result["fallback"]["intended_model"]["version"] == broken_version
    assert "weights file is corrupt" in result["fallback"]["reason"]
    tags = client.get_run(result["mlflow_run_id"]).data.tags
    assert tags["ai.fallback_used"] == "true"
    assert tags["ai.model_version"] == registered_churn["version"]


def test_failed_job_keeps_its_error_and_result_in_its_mlflow_run(
    airflow_env, registered_churn, mlflow_server, monkeypatch
):
    from mlflow import MlflowClient

    from tests.dags.ai_test_dags import s3_batch_inference

    monkeypatch.setenv("AI_TEST_INPUT", f"s3://{airflow_env}/nothing-here/")
    monkeypatch.setenv("AI_TEST_SHARDS", "1")
    dag_run = s3_batch_inference().test()
    assert dag_run.state == "failed"
    client = MlflowClient(tracking_uri=mlflow_server.url)
    (run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name="airflow/s3_batch_inference", role="task"
    )
    assert run.info.status == "FAILED"
    assert run.data.tags["ai.error"].startswith("input not found: s3://")
    assert "job_result.json" in [artifact.path for artifact in client.list_artifacts(run.info.run_id)]


# --- arguments that render to bad values, and the runtime's opt-in duplicate-id check ---------------

TEMPLATED_CASES = {
    "shard_count renders to text": (
        {"shard_count": "{{ 'abc' }}"},
        "score: shard_count must be a positive integer, got 'abc'",
    ),
    "batch_size renders to text": (
        {"batch_size": "{{ 'x' }}"},
        "score: batch_size must be a positive integer, got 'x'",
    ),
    "shard_index renders out of range": (
        {"shard_index": "{{ 5 }}", "shard_count": 2},
        "score: shard_index 5 is out of range for shard_count 2",
    ),
    "id_columns renders to a string with a comma": (
        {"id_columns": "{{ 'customer_id,age' }}"},
        "score: id_columns is the single string 'customer_id,age': pass a list of column names",
    ),
    "duplicate ids with check_unique_ids": (
        {"check_unique_ids": True, "input_uri": "duplicates"},
        "id_columns customer_id are not unique in shard 0/1: 200 id value(s) appear more than once",
    ),
}


@pytest.mark.parametrize("case", list(TEMPLATED_CASES))
def test_bad_rendered_argument_or_duplicate_ids_fail_once_in_one_line_and_write_nothing(
    case, registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch, capfd
):
    """The task fails on its first try (three retries allowed) naming the argument or the ids; the
    argument checks come before any MLflow run, the duplicate check before any output is published."""
    from tests.dags.bad_input_dags import operator_bad_input

    kwargs, message = TEMPLATED_CASES[case]
    write_customers(str(tmp_path / "scoring"), 200, seed=1)
    if kwargs.get("input_uri") == "duplicates":  # the same 200 customers twice, in two files
        write_customers(str(tmp_path / "duplicates"), 200, seed=1, n_files=1)
        (tmp_path / "duplicates" / "again").mkdir()
        write_customers(str(tmp_path / "duplicates" / "again"), 200, seed=1, n_files=1)
        kwargs = {**kwargs, "input_uri": str(tmp_path / "duplicates")}
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_OPERATOR_KWARGS", json.dumps(kwargs))

    dag_run = operator_bad_input().test()

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert message in capfd.readouterr().out
    if "check_unique_ids" not in kwargs:
        runs = dag_run_mlflow_runs(
            mlflow_server.url, dag_run.run_id, experiment_name="airflow/operator_bad_input"
        )
        assert runs == []
    predictions = tmp_path / "predictions"
    assert not predictions.exists() or not [p for p in predictions.rglob("*") if p.is_file()]


def test_id_columns_rendered_to_one_name_is_one_column(
    registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch
):
    from tests.dags.bad_input_dags import operator_bad_input

    write_customers(str(tmp_path / "scoring"), 200, seed=1)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_OPERATOR_KWARGS", json.dumps({"id_columns": "{{ 'customer_id' }}"}))

    dag_run = operator_bad_input().test()

    assert dag_run.state == "success"
    (part,) = (tmp_path / "predictions" / dag_run.run_id).glob("part-*.parquet")
    assert pq.read_schema(part).names[:2] == ["customer_id", "prediction"]


def test_sharded_inference_in_the_warm_runtime_scores_as_new_processes_do_and_records_cost(
    airflow_env, registered_churn, mlflow_server, s3_server, monkeypatch, capfd
):
    """With ``[ai_provider] warm_runtime`` as it is by default (on), every shard of two DAG runs is
    forked by one warm runtime server, and the outputs, MLflow runs and cost metrics are those of new
    runtime processes."""
    import tempfile
    from pathlib import Path

    from airflow_ai_provider import cost
    from airflow_ai_provider.execution import local
    from tests._support.warm_servers import servers_under, stop_servers_under
    from tests.dags.ai_test_dags import s3_batch_inference

    root = Path(tempfile.mkdtemp(prefix="aiw-", dir="/tmp"))  # a Unix socket path is short
    monkeypatch.setattr(local, "default_scratch_root", lambda: root)
    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", raising=False)
    try:
        runs = [s3_batch_inference().test(), s3_batch_inference().test()]
        servers = servers_under(root)
    finally:
        stop_servers_under(root)
    assert [dag_run.state for dag_run in runs] == ["success", "success"]
    log = capfd.readouterr().out
    forked_by = set(re.findall(r"Runtime forked by the warm runtime server (\d+) as process \d+", log))
    assert len(servers) == 1 and forked_by == {str(servers[0])}
    assert log.count("Runtime forked by the warm runtime server") == 2 * SHARDS
    assert "Warm runtime not used" not in log

    expected = make_customers(ROWS, seed=7, with_label=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    model = mlflow.pyfunc.load_model(registered_churn["model_uri"])
    for dag_run in runs:
        _, predictions = _read_outputs(s3_server, airflow_env, dag_run.run_id)
        merged = expected.merge(predictions, on="customer_id")
        assert len(merged) == ROWS
        features = merged[[c for c in expected.columns if c != "customer_id"]]
        assert (model.predict(features) == merged["prediction"].to_numpy()).all()
        tasks = dag_run_mlflow_runs(
            mlflow_server.url, dag_run.run_id, experiment_name="airflow/s3_batch_inference", role="task"
        )
        assert len(tasks) == SHARDS
        for task in tasks:
            assert task.info.status == "FINISHED"
            assert task.data.metrics["rows_out"] > 0
            assert task.data.metrics[cost.CPU_SECONDS] > 0  # the usage the server reaped
            assert task.data.metrics[cost.MEMORY_GB_SECONDS] > 0


def test_the_first_task_of_a_dag_run_starts_the_warm_runtime_server_its_ai_task_is_forked_by(
    airflow_env, registered_churn, s3_server, monkeypatch, capfd
):
    """The provider's plugin (loaded by Airflow from its entry point) starts the server when the
    DAG's plain first task starts running; the AI task after it is forked by that server."""
    import tempfile
    from pathlib import Path

    from airflow_ai_provider.execution import local
    from tests._support.airflow_records import dag_run_outcomes
    from tests._support.warm_servers import servers_under, stop_servers_under
    from tests.dags.ai_test_dags import warm_started_inference

    root = Path(tempfile.mkdtemp(prefix="aiw-", dir="/tmp"))  # a Unix socket path is short
    monkeypatch.setattr(local, "default_scratch_root", lambda: root)
    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", raising=False)
    try:
        dag_run = warm_started_inference().test()
        servers = servers_under(root)
    finally:
        stop_servers_under(root)

    assert dag_run.state == "success"
    outcomes = {o.task_id: o for o in dag_run_outcomes("warm_started_inference", dag_run.run_id)}
    assert outcomes["score"].result["status"] == "success"
    seen_by_first_task = outcomes["servers_running"].result  # before any AI task ran
    assert len(servers) == 1 and seen_by_first_task == servers
    log = capfd.readouterr().out
    assert f"Runtime forked by the warm runtime server {servers[0]} as process" in log
    assert "Warm runtime not used" not in log
