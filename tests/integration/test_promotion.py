"""Promotion, rollback, the concurrent-promotion guard and human approval, against a real
``mlflow server`` and real Airflow (``dag.test()``, the Core API's HITL route, the scheduler's own
HITL timeout sweep)."""

from __future__ import annotations

import uuid

import pytest

from airflow_ai_provider.exceptions import ConcurrentPromotionError
from tests._support.airflow_records import dag_run_mlflow_runs
from tests._support.churn_sample import train_and_register
from tests._support.core_api import in_process_core_api
from tests._support.human_input import HumanInput, timeout_sweep


@pytest.fixture
def two_versions(mlflow_server, mlflow_connection, monkeypatch) -> dict[str, str]:
    """A fresh model: version 1 is champion, version 2 challenger."""
    name = f"churn-{uuid.uuid4().hex[:8]}"
    champion = train_and_register(mlflow_server.url, name, alias="champion", n_rows=2_000, seed=1)
    challenger = train_and_register(mlflow_server.url, name, alias="challenger", n_rows=2_000, seed=2)
    monkeypatch.setenv("AI_TEST_MODEL", name)
    return {"name": name, "champion": str(champion["version"]), "challenger": str(challenger["version"])}


def _client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


def _states(dag_run) -> dict[str, str]:
    from tests._support.airflow_records import dag_run_outcomes

    return {o.task_id: o.state for o in dag_run_outcomes(dag_run.dag_id, dag_run.run_id)}


def test_promotion_moves_champion_and_records_who_why_when(two_versions, mlflow_server):
    from tests.dags.promotion_dags import promote_then_check

    dag_run = promote_then_check().test()
    assert _states(dag_run) == {"promote": "success", "smoke_test": "success", "rollback": "skipped"}
    model = _client(mlflow_server).get_registered_model(two_versions["name"])
    assert str(model.aliases["champion"]) == two_versions["challenger"]
    assert str(model.aliases["champion_previous"]) == two_versions["champion"]
    tags = _client(mlflow_server).get_model_version(two_versions["name"], two_versions["challenger"]).tags
    assert tags["ai.promotion_reason"] == "quality gate passed"
    assert tags["ai.replaced_version"] == two_versions["champion"]
    assert tags["ai.promoted_by_dag_run"] == f"promote_then_check/{dag_run.run_id}"


def test_failed_post_promotion_check_rolls_back_in_one_task(two_versions, mlflow_server, monkeypatch):
    from tests.dags.promotion_dags import promote_then_check

    monkeypatch.setenv("AI_TEST_SMOKE_FAIL", "1")
    dag_run = promote_then_check().test()
    assert _states(dag_run) == {"promote": "success", "smoke_test": "failed", "rollback": "success"}
    client = _client(mlflow_server)
    assert (
        str(client.get_registered_model(two_versions["name"]).aliases["champion"]) == two_versions["champion"]
    )
    rolled_back = client.get_model_version(two_versions["name"], two_versions["challenger"]).tags
    assert rolled_back["ai.rollback_reason"] == "post-promotion check failed"
    restored = client.get_model_version(two_versions["name"], two_versions["champion"]).tags
    assert restored["ai.restored_by_dag_run"] == f"promote_then_check/{dag_run.run_id}"


def test_promotion_refuses_when_champion_moved_since_the_dag_run_saw_it(two_versions, mlflow_server):
    from airflow_ai_provider.alias_ledger import AliasMove, move_alias
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    # Someone else promoted the challenger after this DAG run pinned the champion.
    _client(mlflow_server).set_registered_model_alias(
        two_versions["name"], "champion", two_versions["challenger"]
    )
    move = AliasMove(
        two_versions["name"], "champion", two_versions["champion"], two_versions["champion"], "other-run"
    )
    with pytest.raises(ConcurrentPromotionError, match=r"points to version 2, but this DAG run saw 1"):
        move_alias(MlflowHook(), move)


# --- human approval ---------------------------------------------------------------------------


@pytest.fixture
def core_api(monkeypatch):
    """Airflow's own Core API app, in-process, everyone an admin (simple auth manager)."""
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    with in_process_core_api() as client:
        yield client


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_human_answer_through_the_api_decides_the_promotion(two_versions, mlflow_server, core_api, answer):
    from tests.dags.promotion_dags import approve_then_promote

    def respond(run_id: str) -> None:
        response = core_api.patch(
            f"/api/v2/dags/approve_then_promote/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
            json={"chosen_options": [answer], "params_input": {"comment": "looks good"}},
        )
        assert response.status_code == 200, (
            f"the HITL answer was refused: {response.status_code} {response.text}"
        )

    human = HumanInput("approve_then_promote", respond)
    dag_run = approve_then_promote().test()
    human.result()
    states = _states(dag_run)
    champion = str(_client(mlflow_server).get_registered_model(two_versions["name"]).aliases["champion"])
    if answer == "Approve":
        assert states == {"approve": "success", "promote": "success"}
        assert champion == two_versions["challenger"]
        tags = _client(mlflow_server).get_model_version(two_versions["name"], champion).tags
        assert tags["ai.approval_comment"] == "looks good"
        assert tags["ai.approved_by"]
    else:
        assert states == {"approve": "success", "promote": "skipped"}
        assert champion == two_versions["champion"]


def test_unanswered_approval_times_out_to_reject(two_versions, mlflow_server, monkeypatch):
    from tests.dags.promotion_dags import approve_then_promote

    monkeypatch.setenv("AI_TEST_APPROVAL_TIMEOUT", "1")
    human = HumanInput("approve_then_promote", timeout_sweep(1.5))
    dag_run = approve_then_promote().test()
    human.result()
    assert _states(dag_run) == {"approve": "success", "promote": "skipped"}
    champion = _client(mlflow_server).get_registered_model(two_versions["name"]).aliases["champion"]
    assert str(champion) == two_versions["champion"]


def test_promotion_books_its_run_in_the_connections_default_experiment_under_one_parent(
    mlflow_server, mlflow_connection, monkeypatch
):
    import json

    name = f"churn-{uuid.uuid4().hex[:8]}"
    client = _client(mlflow_server)
    client.create_registered_model(name)
    for version, alias in (("1", "champion"), ("2", "challenger")):
        client.create_model_version(name, source="s3://nowhere/model")
        client.set_registered_model_alias(name, alias, version)
    experiment_name = f"team-{uuid.uuid4().hex[:8]}"
    conn = {"conn_type": "mlflow", "host": mlflow_server.url, "extra": {"experiment_name": experiment_name}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AI_TEST_MODEL", name)
    from tests.dags.promotion_dags import promote_then_check

    dag_run = promote_then_check().test()

    assert _states(dag_run)["promote"] == "success"
    runs = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=experiment_name)
    (parent,) = [run for run in runs if run.data.tags.get("airflow.role") == "dag_run"]
    (promote,) = [run for run in runs if run.data.tags.get("airflow.task_id") == "promote"]
    assert promote.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert not dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name="airflow/promote_then_check"
    )


# --- one DAG run: gate -> (the alias may move) -> promote -------------------------------------


@pytest.fixture
def gated_model(mlflow_server, mlflow_connection, monkeypatch, tmp_path) -> dict[str, str]:
    """Champion v1 and challenger v2 (real models, for the gate), v3 registered only to move to;
    a holdout for the gate; the MLflow connection with a default experiment in its extras."""
    import json

    from tests._support.churn_sample import write_customers

    name = f"churn-{uuid.uuid4().hex[:8]}"
    train_and_register(mlflow_server.url, name, alias="champion", n_rows=2_000, seed=1)
    train_and_register(mlflow_server.url, name, alias="challenger", n_rows=2_000, seed=2)
    _client(mlflow_server).create_model_version(name, source="s3://nowhere/model")
    write_customers(tmp_path / "holdout", 1_000, seed=11, with_label=True)
    experiment_name = f"team-{uuid.uuid4().hex[:8]}"
    conn = {"conn_type": "mlflow", "host": mlflow_server.url, "extra": {"experiment_name": experiment_name}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AI_TEST_MODEL", name)
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(tmp_path / "holdout"))
    return {"name": name, "experiment": experiment_name}


def _one_parent_with_tasks(mlflow_server, dag_run, experiment_name: str, task_ids: set[str]):
    """The DAG run's one parent run, in ``experiment_name``, with ``task_ids``' runs nested under it."""
    from mlflow.entities import ViewType

    everywhere = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, role="dag_run")
    runs = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=experiment_name)
    (parent,) = everywhere
    assert (
        parent.info.experiment_id
        == _client(mlflow_server).get_experiment_by_name(experiment_name).experiment_id
    )
    tasks = {
        run.data.tags["airflow.task_id"]: run for run in runs if run.data.tags.get("airflow.role") == "task"
    }
    assert set(tasks) == task_ids
    assert {run.data.tags["mlflow.parentRunId"] for run in tasks.values()} == {parent.info.run_id}
    assert not _client(mlflow_server).search_experiments(
        view_type=ViewType.ALL, filter_string="name = 'airflow/gate_then_promote'"
    )
    return parent, tasks


def test_gate_and_promotion_of_one_dag_run_share_its_parent_run_and_the_gates_champion_pin(
    gated_model, mlflow_server
):
    from tests.dags.promotion_dags import gate_then_promote

    dag_run = gate_then_promote().test()

    assert _states(dag_run) == {"gate": "success", "meanwhile": "success", "promote": "success"}
    parent, tasks = _one_parent_with_tasks(
        mlflow_server, dag_run, gated_model["experiment"], {"gate", "promote"}
    )
    name = gated_model["name"]
    assert parent.data.params[f"pinned_model/{name}/champion"] == "1"
    assert tasks["gate"].data.tags["ai.champion_version"] == "1"
    assert tasks["promote"].data.tags["ai.previous_version"] == "1"
    assert tasks["promote"].data.tags["ai.version"] == "2"
    model = _client(mlflow_server).get_registered_model(name)
    assert (str(model.aliases["champion"]), str(model.aliases["champion_previous"])) == ("2", "1")


def test_promotion_refuses_when_champion_moved_after_the_gate_of_its_dag_run_pinned_it(
    gated_model, mlflow_server, monkeypatch
):
    """The gate compared against champion v1; someone points champion at v3 before the promotion.
    Promoting now would replace v3, a version the gate never saw: the promotion fails on its first
    try (not retried) and writes no alias and no version tag."""
    from tests._support.airflow_records import task_tries
    from tests.dags.promotion_dags import gate_then_promote

    monkeypatch.setenv("AI_TEST_MOVE_CHAMPION_TO", "3")
    dag_run = gate_then_promote().test()

    assert _states(dag_run) == {"gate": "success", "meanwhile": "success", "promote": "failed"}
    assert task_tries(dag_run.run_id, "promote") == [1]
    parent, tasks = _one_parent_with_tasks(
        mlflow_server, dag_run, gated_model["experiment"], {"gate", "promote"}
    )
    name = gated_model["name"]
    assert parent.data.params[f"pinned_model/{name}/champion"] == "1"
    assert tasks["gate"].data.tags["ai.champion_version"] == "1"
    assert tasks["promote"].info.status == "FAILED"
    client = _client(mlflow_server)
    aliases = {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    assert aliases == {"champion": "3", "challenger": "2"}
    assert "ai.promoted_at" not in client.get_model_version(name, "2").tags


def test_promotion_refuses_when_a_champion_appeared_after_the_gate_saw_none(
    gated_model, mlflow_server, monkeypatch
):
    """The gate found no champion (absolute thresholds only); a champion v3 appears before the
    promotion. The gate never compared against v3, so the promotion must not replace it."""
    from tests.dags.promotion_dags import gate_then_promote

    name = gated_model["name"]
    _client(mlflow_server).delete_registered_model_alias(name, "champion")
    monkeypatch.setenv("AI_TEST_MOVE_CHAMPION_TO", "3")
    dag_run = gate_then_promote().test()

    assert _states(dag_run) == {"gate": "success", "meanwhile": "success", "promote": "failed"}
    _, tasks = _one_parent_with_tasks(mlflow_server, dag_run, gated_model["experiment"], {"gate", "promote"})
    assert tasks["gate"].data.tags["ai.champion_version"] == "none"
    client = _client(mlflow_server)
    aliases = {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    assert aliases == {"champion": "3", "challenger": "2"}
    assert "ai.promoted_at" not in client.get_model_version(name, "2").tags
