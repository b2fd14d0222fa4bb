"""The worker's MLflow REST client against the session's real ``mlflow server``: every call it offers
round-trips, answered errors come back as ``MlflowApiError`` with the server's code, and each
artifact store gets a run's texts. Bounds, retries, credentials and TLS are the transport's, tested
once in ``test_mlflow_http.py``.

MLflow's own client (imported by these tests only) reads back what the REST client wrote where the
REST client has no reader of its own (dataset inputs, artifacts)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_ai_provider.hooks.mlflow_entities import (
    ANSWERED,
    Dataset,
    DatasetInput,
    InputTag,
    Metric,
    MlflowApiError,
    Param,
    RunTag,
)
from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient


def _client(
    url: str, env: dict[str, str] | None = None, timeout: float = 5, attempts: int = 2
) -> MlflowRestClient:
    return MlflowRestClient(url, None, env or {}, timeout=timeout, attempts=attempts)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def rest(mlflow_server) -> Iterator[MlflowRestClient]:
    client = _client(mlflow_server.url)
    yield client
    client.close()


@pytest.fixture
def experiment_id(rest) -> str:
    return rest.create_experiment(_unique("rest"))


def test_experiments_round_trip_and_a_second_create_is_already_exists(rest):
    name = _unique("rest-exp")
    experiment_id = rest.create_experiment(name, tags={"team": "churn"})
    found = rest.get_experiment_by_name(name)
    assert (found.experiment_id, found.name, found.lifecycle_stage) == (experiment_id, name, "active")
    assert found.tags["team"] == "churn"
    assert found.artifact_location.startswith("mlflow-artifacts:")
    assert rest.get_experiment(experiment_id).name == name
    assert name in {e.name for e in rest.search_experiments(filter_string=f"name = '{name}'")}
    with pytest.raises(MlflowApiError) as again:
        rest.create_experiment(name)
    assert again.value.error_code == "RESOURCE_ALREADY_EXISTS" and again.value.kind == ANSWERED
    rest.delete_experiment(experiment_id)
    assert rest.get_experiment_by_name(name).lifecycle_stage == "deleted"  # the name stays taken
    assert rest.get_experiment_by_name(_unique("never-created")) is None


def test_runs_round_trip_through_create_update_tags_params_search_terminate_and_delete(rest, experiment_id):
    run = rest.create_run(experiment_id, tags={"ai.role": "task", "mlflow.runName": "score"})
    run_id = run.info.run_id
    assert (run.info.experiment_id, run.info.status) == (experiment_id, "RUNNING")
    assert run.info.start_time > 0 and run.info.artifact_uri.startswith("mlflow-artifacts:")
    rest.set_tag(run_id, "ai.try", 2)
    assert rest.log_param(run_id, "pinned", "3") == "3"
    with pytest.raises(MlflowApiError) as conflict:
        rest.log_param(run_id, "pinned", "4")  # params are write-once
    assert conflict.value.error_code == "INVALID_PARAMETER_VALUE"
    fetched = rest.get_run(run_id)
    assert fetched.data.tags["ai.try"] == "2" and fetched.data.tags["ai.role"] == "task"
    assert fetched.data.params == {"pinned": "3"}
    matches = rest.search_runs([experiment_id], filter_string="tags.`ai.role` = 'task'", max_results=5)
    assert [r.info.run_id for r in matches] == [run_id]
    rest.update_run(run_id, status="FAILED")
    assert rest.get_run(run_id).info.status == "FAILED"
    rest.set_terminated(run_id, status="FINISHED")
    ended = rest.get_run(run_id).info
    assert ended.status == "FINISHED" and ended.end_time is not None
    rest.delete_run(run_id)
    assert rest.search_runs([experiment_id]) == []
    assert rest.get_run(run_id).info.lifecycle_stage == "deleted"


def test_log_batch_splits_at_mlflows_limits_and_logs_everything(rest, experiment_id):
    run_id = rest.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"m{i}", float(i), now, 0) for i in range(1500)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(150)]
    params = [Param(f"p{i}", str(i)) for i in range(120)]
    rest.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    data = rest.get_run(run_id).data
    assert len(data.metrics) == 1500 and data.metrics["m1499"] == 1499.0
    assert {f"t{i}" for i in range(150)} <= set(data.tags)
    assert len(data.params) == 120


def test_log_text_puts_the_artifact_through_the_server_and_log_inputs_records_the_dataset(
    rest, experiment_id, mlflow_server
):
    from mlflow import MlflowClient

    run_id = rest.create_run(experiment_id).info.run_id
    rest.log_text(run_id, '{"rows_out": 3}', "job/result.json")
    dataset = Dataset("scoring", "abc123", "local", json.dumps({"uri": "/data/in"}), schema=None)
    rest.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "inference")])])
    native = MlflowClient(tracking_uri=mlflow_server.url)
    stored = list(mlflow_server.artifacts_dir.rglob("result.json"))
    assert [path.read_text() for path in stored if run_id in str(path)] == ['{"rows_out": 3}']
    (logged,) = native.get_run(run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest) == ("scoring", "abc123")
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "inference")]


def test_log_text_writes_a_file_artifact_location_directly_and_whole(rest, tmp_path):
    experiment_id = rest.create_experiment(_unique("rest-file"), artifact_location=tmp_path.as_uri())
    run = rest.create_run(experiment_id)
    rest.log_text(run.info.run_id, "all of it", "job/result.json")
    written = Path(run.info.artifact_uri.removeprefix("file://")) / "job" / "result.json"
    assert written.read_text() == "all of it"
    assert [p.name for p in written.parent.iterdir()] == ["result.json"]  # no temporary file left


def test_registry_calls_round_trip_aliases_tags_and_searches(rest, experiment_id, mlflow_server):
    from mlflow import MlflowClient

    name = _unique("rest-model")
    run = rest.create_run(experiment_id)
    native = MlflowClient(tracking_uri=mlflow_server.url)
    native.create_registered_model(name)
    for _ in range(2):
        native.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    rest.set_registered_model_alias(name, "champion", 1)
    rest.set_registered_model_tag(name, "ai.alias_epoch.champion", 1)
    rest.set_model_version_tag(name, "2", "ai.promoted_by", "dag/run")
    model = rest.get_registered_model(name)
    assert model.aliases == {"champion": "1"} and model.tags["ai.alias_epoch.champion"] == "1"
    assert rest.get_model_version_by_alias(name, "champion").version == "1"
    version = rest.get_model_version(name, 2)
    assert (version.run_id, version.tags["ai.promoted_by"]) == (run.info.run_id, "dag/run")
    assert sorted(v.version for v in rest.search_model_versions(f"name = '{name}'")) == ["1", "2"]
    rest.delete_registered_model_alias(name, "champion")
    assert rest.get_registered_model(name).aliases == {}
    with pytest.raises(MlflowApiError) as unknown:
        rest.get_model_version(name, 9)
    assert unknown.value.error_code == "RESOURCE_DOES_NOT_EXIST" and unknown.value.http_status == 404


def test_log_text_hands_any_other_artifact_store_to_mlflows_client(
    rest, s3_server, s3_bucket, s3_env, monkeypatch
):
    """An experiment whose artifacts live in S3 (the session's moto server): the REST client has no
    writer for it, so this one call goes through MLflow's own client and lands in the bucket."""
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    experiment_id = rest.create_experiment(_unique("rest-s3"), artifact_location=f"s3://{s3_bucket}/runs")
    run = rest.create_run(experiment_id)
    rest.log_text(run.info.run_id, "in the bucket", "job/result.json")
    key = f"{run.info.artifact_uri.removeprefix(f's3://{s3_bucket}/')}/job/result.json"
    stored = s3_server.client().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert stored == b"in the bucket"
