"""Promotion and rollback with bad input fail once, in one line, and write nothing; an unreachable
registry is retried and the retry completes the one move. Real Airflow (``dag.test()``) against the
session's real ``mlflow server``; the wire failure is injected by a loopback proxy."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_ai_provider.alias_ledger import CLAIM_EXPERIMENT_PREFIX, EPOCH_TAG_PREFIX
from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.http_proxy import Rule, http_proxy


def _client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url)


@pytest.fixture
def model(mlflow_server, mlflow_connection, monkeypatch) -> str:
    """A fresh model: version 1 is champion, version 2 challenger (registry metadata only)."""
    name = f"promo-{uuid.uuid4().hex[:8]}"
    client = _client(mlflow_server.url)
    client.create_registered_model(name)
    for version, alias in (("1", "champion"), ("2", "challenger")):
        client.create_model_version(name, source="s3://nowhere/model")
        client.set_registered_model_alias(name, alias, version)
    monkeypatch.setenv("AI_TEST_MODEL", name)
    return name


def _running_runs(url: str, dag_id: str) -> list:
    experiment = _client(url).get_experiment_by_name(f"airflow/{dag_id}")
    if experiment is None:
        return []
    return _client(url).search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")


def _claims(url: str, name: str) -> list:
    from mlflow.entities import ViewType

    return _client(url).search_experiments(
        view_type=ViewType.ALL, filter_string=f"name LIKE '{CLAIM_EXPERIMENT_PREFIX}/{name}/%'"
    )


def _assert_registry_untouched(url: str, name: str) -> None:
    """No alias moved or added, no version tag, no epoch, no claim."""
    client = _client(url)
    registered = client.get_registered_model(name)
    assert {alias: str(version) for alias, version in registered.aliases.items()} == {
        "champion": "1",
        "challenger": "2",
    }
    assert not [key for key in registered.tags if key.startswith(EPOCH_TAG_PREFIX)]
    for version in client.search_model_versions(f"name = '{name}'"):
        assert not [key for key in version.tags if key.startswith("ai.")], version.tags
    assert _claims(url, name) == []


BAD_ALIASES = {
    "latest": "is reserved by MLflow",
    "LATEST": "is reserved by MLflow",
    "v2": "is reserved by MLflow (v<number>",
    "V10": "is reserved by MLflow (v<number>",
    "bad alias": "is not a valid MLflow alias",
    "x" * 256: "is 256 characters long: MLflow allows at most 255",
    "x" * 250: "the promotion also writes alias+'_previous'",
    "": "is not an alias name",
}
BAD_REFERENCES = {
    "unknown model": (
        {"model": "no_such_model@challenger"},
        "registered model 'no_such_model' does not exist",
    ),
    "unknown version": ({"model": "{model}/99"}, "has no version 99"),
    "unknown alias": ({"model": "{model}@no_such_alias"}, "has no alias 'no_such_alias'"),
    "reference that does not parse": ({"model": "{model}@@x"}, "is not valid"),
    "approval task not in the DAG": (
        {"approval_task_id": "approve"},
        "approval_task_id='approve' is not a task",
    ),
    "approval task that is no approval step": (
        {"approval_task_id": "not_an_approval"},
        "approval_task_id='not_an_approval' returned str, not an approval answer",
    ),
}


def _run_promote(conf: dict):
    from tests.dags.promotion_bad_input_dags import promote_templated

    return promote_templated().test(run_conf=conf)


@pytest.mark.parametrize("alias", list(BAD_ALIASES), ids=lambda alias: alias[:12] or "empty")
def test_templated_alias_mlflow_refuses_fails_once_at_task_start_and_writes_nothing(
    alias, model, mlflow_server, capfd
):
    dag_run = _run_promote({"alias": alias})

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, "promote") == [1]  # two retries were allowed: none was used
    assert BAD_ALIASES[alias] in capfd.readouterr().out
    # refused before booking a run
    assert (
        dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, "promote", f"airflow/{dag_run.dag_id}") == []
    )
    assert _running_runs(mlflow_server.url, dag_run.dag_id) == []
    _assert_registry_untouched(mlflow_server.url, model)
    assert alias not in _client(mlflow_server.url).get_registered_model(model).aliases


@pytest.mark.parametrize("case", list(BAD_REFERENCES))
def test_bad_model_reference_or_approval_task_fails_once_and_writes_nothing(
    case, model, mlflow_server, capfd
):
    conf, message = BAD_REFERENCES[case]
    dag_run = _run_promote({key: value.format(model=model) for key, value in conf.items()})

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, "promote") == [1]
    assert message in capfd.readouterr().out
    assert (
        dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, "promote", f"airflow/{dag_run.dag_id}") == []
    )
    assert _running_runs(mlflow_server.url, dag_run.dag_id) == []
    _assert_registry_untouched(mlflow_server.url, model)


def test_rollback_naming_another_model_fails_once_and_undoes_nothing(model, mlflow_server, capfd):
    from tests.dags.promotion_bad_input_dags import promote_then_rollback

    dag_run = promote_then_rollback().test(run_conf={"rollback_model": "someone_else@champion"})

    assert task_tries(dag_run.run_id, "rollback") == [1]
    assert f"promoted {model!r}" in capfd.readouterr().out
    client = _client(mlflow_server.url)
    assert str(client.get_registered_model(model).aliases["champion"]) == "2"  # the promotion stands
    assert not [key for key in client.get_model_version(model, "1").tags if key.startswith("ai.restored")]
    assert not [key for key in client.get_model_version(model, "2").tags if key.startswith("ai.rolled_back")]
    (rollback_run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, "rollback", f"airflow/{dag_run.dag_id}"
    )
    assert rollback_run.info.status == "FAILED"
    assert _running_runs(mlflow_server.url, dag_run.dag_id) == []


def test_alias_move_lost_on_the_wire_is_retried_and_the_retry_completes_the_one_move(
    model, mlflow_server, monkeypatch
):
    # Every HTTP try of the first alias move fails: the first task try ends with "unreachable".
    rule = Rule("POST", "/api/2.0/mlflow/registered-models/alias", "fail", status=503, times=3)
    with http_proxy(mlflow_server.url, [rule], lifetime=300) as proxy:
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": proxy.url})
        )
        dag_run = _run_promote({})

    assert rule.hits == 3
    assert dag_run.state == "success"
    assert task_tries(dag_run.run_id, "promote") == [2]
    client = _client(mlflow_server.url)
    registered = client.get_registered_model(model)
    assert str(registered.aliases["champion"]) == "2"
    assert str(registered.aliases["champion_previous"]) == "1"
    assert registered.tags[f"{EPOCH_TAG_PREFIX}champion"] == "1"  # one move, one epoch
    (claim,) = _claims(mlflow_server.url, model)
    assert claim.tags["ai.claim.claimant"] == f"promote_templated/{dag_run.run_id}/promote"
    assert client.get_model_version(model, "2").tags["ai.promoted_by_dag_run"].endswith(dag_run.run_id)
    # the retry reused the run
    (task_run,) = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, "promote", f"airflow/{dag_run.dag_id}"
    )
    assert task_run.info.status == "FINISHED"
    assert _running_runs(mlflow_server.url, dag_run.dag_id) == []
