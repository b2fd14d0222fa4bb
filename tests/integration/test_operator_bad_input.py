"""Bad input found in the worker, before the runtime starts, is never retried and writes nothing.

Each case runs a real Airflow DAG (``dag.test()``) against the session's real ``mlflow server``: the
task must fail on its first try (three retries are configured), print one line naming the argument,
and leave no MLflow run, no experiment run left RUNNING and no output behind.
"""

from __future__ import annotations

import json

import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import train_and_register, write_customers

EXPERIMENT = "airflow/operator_bad_input"


@pytest.fixture(scope="module")
def registered_churn(mlflow_server) -> dict:
    return train_and_register(mlflow_server.url, "churn", alias="champion", n_rows=2_000)


CASES = {
    "unknown model": ({"model": "no_such_model@champion"}, "model='no_such_model@champion'"),
    "unknown alias": ({"model": "churn@no_such_alias"}, "has no alias 'no_such_alias'"),
    "unknown version": ({"model": "churn/999"}, "has no version 999"),
    "templated reference that does not parse": ({"model": "{{ 'churn@@x' }}"}, "is not valid"),
    "unknown fallback model": (
        {"fallback_model": "no_such_fallback@champion_previous"},
        "fallback_model='no_such_fallback@champion_previous'",
    ),
    "templated execution mode": ({"execution_mode": "{{ 'podman' }}"}, "invalid execution_mode 'podman'"),
    "missing aws connection": ({"aws_conn_id": "no_such_aws"}, "aws_conn_id 'no_such_aws'"),
    "templated shard count that is not a number": ({"shard_count": "{{ 'abc' }}"}, "shard_count"),
    "templated shard index out of range": (
        {"shard_index": "{{ 5 }}", "shard_count": "{{ 2 }}"},
        "shard",
    ),
    "templated batch size that is not a number": ({"batch_size": "{{ 'x' }}"}, "batch_size"),
    "templated id columns naming two columns in one string": (
        {"id_columns": "{{ 'customer_id,region' }}"},
        "id_columns",
    ),
    "missing mlflow connection": (
        {"mlflow_conn_id": "no_such_mlflow"},
        "MLflow connection 'no_such_mlflow' does not exist",
    ),
}


def _run_case(kwargs, monkeypatch, tmp_path):
    from tests.dags.bad_input_dags import operator_bad_input

    write_customers(str(tmp_path / "scoring"), 200, seed=1)
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_OPERATOR_KWARGS", json.dumps(kwargs))
    return operator_bad_input().test()


@pytest.mark.parametrize("case", list(CASES))
def test_worker_side_bad_input_fails_once_naming_the_argument_and_writes_nothing(
    case, registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch, capfd
):
    kwargs, message = CASES[case]
    dag_run = _run_case(kwargs, monkeypatch, tmp_path)

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]  # three retries were allowed: none was used
    output = capfd.readouterr().out
    assert message in output
    assert "score: score:" not in output  # the task is named once
    assert dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=EXPERIMENT) == []
    assert not (tmp_path / "predictions").exists()


def test_execution_mode_from_the_environment_is_bad_input(
    registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "kubernets")
    dag_run = _run_case({"execution_mode": None}, monkeypatch, tmp_path)

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert "AIRFLOW__AI_PROVIDER__EXECUTION_MODE" in capfd.readouterr().out
    assert dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=EXPERIMENT) == []


def test_deleted_experiment_is_bad_input_with_the_way_to_restore_it(
    registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch, capfd
):
    import uuid

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    name = f"deleted-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)

    dag_run = _run_case({"experiment_name": name}, monkeypatch, tmp_path)

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert f"mlflow experiments restore --experiment-id {experiment_id}" in capfd.readouterr().out
    assert client.search_runs([experiment_id], run_view_type=3) == []  # ViewType.ALL


def test_literal_bad_argument_fails_when_the_dag_is_built_not_when_it_runs(monkeypatch, tmp_path):
    from airflow_ai_provider.exceptions import AiProviderConfigError
    from tests.dags.bad_input_dags import operator_bad_input

    monkeypatch.setenv("AI_TEST_OPERATOR_KWARGS", json.dumps({"input_format": "xlsx"}))
    with pytest.raises(AiProviderConfigError, match=r"^score: input_format must be one of parquet, csv"):
        operator_bad_input()


def test_fallback_alias_that_does_not_exist_yet_does_not_stop_a_healthy_model(
    registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch
):
    """Before the second promotion there is no ``champion_previous``: scoring must still run."""
    dag_run = _run_case({"fallback_model": "churn@champion_previous"}, monkeypatch, tmp_path)

    assert dag_run.state == "success"
    assert (tmp_path / "predictions" / dag_run.run_id / "part-00000-of-00001.parquet").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "kubernetes execution mode found no cluster configuration"),
        ({"kubernetes_conn_id": "no_such_cluster"}, "kubernetes_conn_id 'no_such_cluster'"),
    ],
    ids=["no-cluster-configuration", "missing-kubernetes-connection"],
)
def test_kubernetes_mode_without_a_cluster_is_bad_configuration(
    kwargs, message, registered_churn, mlflow_server, mlflow_connection, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kube-config"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    dag_run = _run_case({"execution_mode": "kubernetes", **kwargs}, monkeypatch, tmp_path)

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id) == [1]
    assert message in capfd.readouterr().out
    assert dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=EXPERIMENT) == []
