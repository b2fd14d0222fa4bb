"""MlflowHook: where MLflow is, credentials that never stay behind, runs per DAG run and task, pinning.

These run against a real MLflow SQLite store in a temporary folder (no server needed).
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from airflow_ai_provider.exceptions import AiProviderConfigError, MlflowUnavailableError, ModelReferenceError
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.mlflow_registry import pin_model, resolve_model
from airflow_ai_provider.mlflow_runs import RunIdentity, finish_task_run, start_task_run


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def registered(store):
    """Model 'churn' with versions 1 and 2, alias champion -> 1."""
    hook = MlflowHook()
    with hook.client() as client:
        client.create_registered_model("churn")
        for _ in range(2):
            client.create_model_version("churn", source="file:///nowhere/model")
        client.set_registered_model_alias("churn", "champion", "1")
    return hook


def _who(task_id="score", map_index=-1, try_number=1, run_id="manual__1"):
    return RunIdentity(
        dag_id="dag", run_id=run_id, task_id=task_id, map_index=map_index, try_number=try_number
    )


def test_without_connection_uses_mlflow_tracking_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert MlflowHook().tracking_uri == "http://127.0.0.1:5999"


def test_without_connection_or_env_uses_embedded_store_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert MlflowHook().tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"


def test_connection_fields_map_to_uri_and_credentials(monkeypatch):
    conn = {
        "conn_type": "mlflow",
        "host": "https://mlflow.example.com/",
        "login": "alice",
        "password": "s3cret",
        "extra": {"registry_uri": "databricks-uc", "token": "tok", "experiment_name": "team", "other": "x"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    settings = MlflowHook().settings
    assert settings.tracking_uri == "https://mlflow.example.com"
    assert settings.registry_uri == "databricks-uc"
    assert settings.experiment_name == "team"
    assert settings.credentials == {
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
        "MLFLOW_TRACKING_TOKEN": "tok",
    }
    assert "s3cret" not in repr(settings)


def test_credentials_in_uri_are_moved_out_of_it(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": "http://bob:pw@h:5000"})
    )
    settings = MlflowHook().settings
    assert settings.tracking_uri == "http://h:5000"
    assert settings.credentials["MLFLOW_TRACKING_PASSWORD"] == "pw"


def test_named_connection_that_does_not_exist_is_a_clear_error():
    with pytest.raises(AiProviderConfigError, match="MLflow connection 'mlflow_prod' does not exist"):
        _ = MlflowHook("mlflow_prod").settings


def test_credentials_are_visible_during_a_call_and_gone_after(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": uri, "password": "pw"})
    )
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    hook = MlflowHook()
    assert hook.tracking_uri == uri
    with hook.client() as client:
        assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "pw"
        client.search_experiments(max_results=1)
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    with pytest.raises(RuntimeError), hook.client():
        raise RuntimeError("task failed mid-call")
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_unreachable_server_fails_fast_with_one_line(monkeypatch):
    from airflow_ai_provider.exceptions import MlflowUnavailableError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(
        MlflowUnavailableError, match=r"^MLflow tracking server http://127.0.0.1:9 is unreachable"
    ):
        MlflowHook().get_or_create_experiment("x")


def test_task_run_nests_under_one_parent_per_dag_run(store):
    hook = MlflowHook()
    first = start_task_run(hook, _who("a"), "exp")
    second = start_task_run(hook, _who("b"), "exp")
    other_dag_run = start_task_run(hook, _who("a", run_id="manual__2"), "exp")
    assert first.parent_run_id == second.parent_run_id != other_dag_run.parent_run_id
    with hook.client() as client:
        run = client.get_run(first.run_id)
    assert run.data.tags["mlflow.parentRunId"] == first.parent_run_id
    assert run.data.tags["airflow.task_id"] == "a"


def test_retry_reuses_the_task_run(store):
    hook = MlflowHook()
    first_try = start_task_run(hook, _who(try_number=1), "exp")
    finish_task_run(hook, first_try, _who(), succeeded=False)
    second_try = start_task_run(hook, _who(try_number=2), "exp")
    assert second_try.run_id == first_try.run_id
    with hook.client() as client:
        runs = client.search_runs([first_try.experiment_id])
        assert client.get_run(second_try.run_id).data.tags["airflow.try_number"] == "2"
    assert len(runs) == 2  # one parent, one task run


def test_mapped_task_instances_get_one_run_each(store):
    hook = MlflowHook()
    runs = {start_task_run(hook, _who(map_index=i), "exp").run_id for i in range(3)}
    assert len(runs) == 3


def test_concurrent_tasks_converge_on_one_parent_run(store):
    hook = MlflowHook()
    hook.get_or_create_experiment("exp")
    barrier = threading.Barrier(4)
    booked = {}

    def start(index: int) -> None:
        barrier.wait()
        booked[index] = start_task_run(MlflowHook(), _who(map_index=index), "exp")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, run in booked.items():
        finish_task_run(MlflowHook(), run, _who(map_index=index), succeeded=True)
    with hook.client() as client:
        experiment_id = booked[0].experiment_id
        parents = client.search_runs([experiment_id], filter_string="tags.`airflow.role` = 'dag_run'")
        children = client.search_runs([experiment_id], filter_string="tags.`airflow.role` = 'task'")
    assert len(parents) == 1
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {parents[0].info.run_id}


def test_a_parent_run_deleted_by_a_racing_task_right_after_its_election_is_elected_again(store, monkeypatch):
    """The race that concurrent tasks hit at random, made certain: right after this task elects the
    DAG run's parent, a racing task's older parent run appears and the racer deletes the elected one
    (the interleaving is injected around the real election; the store is real)."""
    import mlflow

    from airflow_ai_provider import mlflow_runs

    real_election = mlflow_runs._elect_parent_run
    rivals: list[str] = []

    def election_then_a_racer(client, experiment_id, who):
        elected = real_election(client, experiment_id, who)
        if not rivals:
            racer = mlflow.MlflowClient(store)
            older = racer.get_run(elected).info.start_time - 1000
            tags = {**mlflow_runs.dag_run_tags(who), "mlflow.runName": f"{who.dag_id}/{who.run_id}"}
            rivals.append(racer.create_run(experiment_id, start_time=older, tags=tags).info.run_id)
            racer.delete_run(elected)
        return elected

    monkeypatch.setattr(mlflow_runs, "_elect_parent_run", election_then_a_racer)
    run = start_task_run(MlflowHook(), _who(), "exp")

    assert run.parent_run_id == rivals[0]
    with MlflowHook().client() as client:
        assert client.get_run(rivals[0]).info.status == "RUNNING"
        assert client.get_run(run.run_id).data.tags["mlflow.parentRunId"] == rivals[0]


def test_alias_is_pinned_once_per_dag_run(registered):
    hook = registered
    run = start_task_run(hook, _who(), "exp")
    assert pin_model(hook, "churn@champion", run.parent_run_id).version == "1"
    with hook.client() as client:
        client.set_registered_model_alias("churn", "champion", "2")  # promoted mid-run
    assert pin_model(hook, "churn@champion", run.parent_run_id).version == "1"
    next_run = start_task_run(hook, _who(run_id="manual__2"), "exp")
    assert pin_model(hook, "churn@champion", next_run.parent_run_id).version == "2"


def test_bare_name_means_latest_version(registered):
    assert resolve_model(registered, "churn").version == "2"
    assert resolve_model(registered, "models:/churn/1").version == "1"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("fraud@champion", "registered model 'fraud' does not exist"),
        ("churn@shadow", r"model 'churn' has no alias 'shadow' \(its aliases: champion\)"),
        ("churn/7", "model 'churn' has no version 7"),
        ("churn@@x", "model reference 'churn@@x' is not valid"),
    ],
)
def test_bad_model_reference_is_named_in_the_error(registered, reference, message):
    with pytest.raises((ModelReferenceError, AiProviderConfigError), match=message):
        resolve_model(registered, reference)


def test_error_mapping_classifies_answered_errors_only_for_a_named_action(store):
    from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError

    hook = MlflowHook()
    answered = MlflowApiError("no such model", "RESOURCE_DOES_NOT_EXIST", 404)
    with pytest.raises(MlflowApiError) as unmapped, hook.errors():
        raise answered
    assert unmapped.value is answered  # the caller handles what the server answered
    expected = r"^reading churn: no such model \(registry sqlite:"
    with pytest.raises(ModelReferenceError, match=expected), hook.errors("reading churn"):
        raise answered


def test_an_http_store_gets_the_rest_client_and_any_other_store_mlflows_own_raising_the_same_error(
    store, monkeypatch
):
    from airflow_ai_provider.hooks.mlflow_entities import ANSWERED, MlflowApiError
    from airflow_ai_provider.hooks.mlflow_native import NativeClient
    from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient

    with MlflowHook().client() as client:
        assert isinstance(client, NativeClient)
        with pytest.raises(MlflowApiError) as unknown:
            client.get_run("0" * 32)
    assert (unknown.value.error_code, unknown.value.kind) == ("RESOURCE_DOES_NOT_EXIST", ANSWERED)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with MlflowHook().client() as client:
        assert isinstance(client, MlflowRestClient)


@pytest.mark.parametrize(
    ("kind", "expected", "message"),
    [
        ("access", AiProviderConfigError, "refused the credentials of connection 'mlflow_default'"),
        ("timeout", MlflowUnavailableError, "did not answer within"),
        ("unreachable", MlflowUnavailableError, "is unreachable"),
        ("tls", AiProviderConfigError, "connection 'mlflow_default': it failed"),
    ],
)
def test_each_kind_of_failure_maps_to_one_provider_error_without_a_named_action(kind, expected, message):
    from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError

    hook = MlflowHook()
    with pytest.raises(expected, match=message) as raised, hook.errors():
        raise MlflowApiError("it failed", kind=kind)
    assert type(raised.value) is expected
    if kind == "timeout":  # later calls of this try fail at once, without asking again
        with pytest.raises(MlflowUnavailableError, match="not asked again in this try"), hook.client():
            pass
