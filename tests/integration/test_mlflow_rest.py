"""The worker's MLflow REST client against the session's real ``mlflow server``: every call it offers
round-trips, and failures come back as one ``MlflowApiError`` the hook maps (bad input, refused
credentials, a server that never answers, one that refuses connections, one that is overloaded).

MLflow's own client (imported by these tests only) reads back what the REST client wrote where the
REST client has no reader of its own (dataset inputs, artifacts)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from airflow_ai_provider.hooks.mlflow_entities import (
    ACCESS,
    ANSWERED,
    TIMEOUT,
    UNREACHABLE,
    Dataset,
    DatasetInput,
    InputTag,
    Metric,
    MlflowApiError,
    Param,
    RunTag,
)
from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient
from tests._support.http_proxy import Rule, http_proxy


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


def test_unknown_run_is_resource_does_not_exist_answered_by_the_server(rest):
    with pytest.raises(MlflowApiError) as unknown:
        rest.get_run("0" * 32)
    error = unknown.value
    assert (error.error_code, error.http_status, error.kind) == ("RESOURCE_DOES_NOT_EXIST", 404, ANSWERED)
    assert "runs/get" in str(error) and "\n" not in str(error)


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request 401 as an authenticating gateway would, keeping the headers it got."""

    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        body = b'{"error_code": "UNAUTHENTICATED", "message": "bad credentials"}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def _recording_gateway() -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Recorder", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-secret-7"}, "Basic "),
        ({"MLFLOW_TRACKING_TOKEN": "tok-secret-7"}, "Bearer tok-secret-7"),
    ],
    ids=["basic", "bearer"],
)
def test_credentials_are_sent_as_headers_and_a_refusal_is_access_without_the_secret(env, expected):
    with _recording_gateway() as (url, seen):
        client = _client(url, env)
        with pytest.raises(MlflowApiError) as refused:
            client.get_run("r1")
    authorization = seen[0]["Authorization"]
    if expected == "Basic ":
        assert base64.b64decode(authorization.removeprefix("Basic ")) == b"alice:pw-secret-7"
    else:
        assert authorization == expected
    assert len(seen) == 1  # refused credentials are not sent again
    assert (refused.value.kind, refused.value.http_status) == (ACCESS, 401)
    assert "secret" not in str(refused.value)


def test_a_server_that_never_answers_times_out_within_attempts_times_timeout():
    """A socket that listens but never accepts: the kernel takes the connection, nobody answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = _client(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=2, attempts=2)
        started = time.monotonic()
        with pytest.raises(MlflowApiError) as hung:
            client.search_experiments(max_results=1)
        elapsed = time.monotonic() - started
    assert hung.value.kind == TIMEOUT and "timed out" in str(hung.value)
    assert elapsed < 15  # bounded: 2 attempts of 2 s, where MLflow's defaults wait for minutes


def test_a_refused_connection_is_unreachable():
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    with pytest.raises(MlflowApiError) as refused:
        _client(f"http://127.0.0.1:{port}").get_run("r1")
    assert refused.value.kind == UNREACHABLE and f"127.0.0.1:{port}" in str(refused.value)


def test_an_overloaded_answer_is_retried_and_the_second_attempt_succeeds(mlflow_server, experiment_id):
    rule = Rule("GET", "/experiments/get", "fail", status=503, times=1)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        assert _client(proxy.url).get_experiment(experiment_id).experiment_id == experiment_id
        assert proxy.count("GET", "/experiments/get") == 2


def test_throttling_on_every_attempt_is_infrastructure(mlflow_server, experiment_id):
    rule = Rule("GET", "/experiments/get", "fail", status=429, times=10)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        with pytest.raises(MlflowApiError) as throttled:
            _client(proxy.url).get_experiment(experiment_id)
        assert proxy.count("GET", "/experiments/get") == 2
    assert (throttled.value.kind, throttled.value.http_status) == (UNREACHABLE, 429)
