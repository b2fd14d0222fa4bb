"""Quality gate and drift detection end to end: real Airflow DAGs (``dag.test()``), a real ``mlflow
server``, local execution mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile
from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.churn_sample import FEATURES, make_customers, train_and_register, write_customers

GATE_MODEL = "gate_churn"
FRESH_MODEL = "gate_fresh"
DRIFT_MODEL = "drift_churn"


@pytest.fixture(scope="module")
def models(mlflow_server) -> dict:
    """``gate_churn`` v1: good, the champion; v2: weak, the challenger. ``gate_fresh`` v1: good, a
    challenger with no champion. ``drift_churn`` v1: the champion, with a reference profile of its
    training data in its run."""
    from mlflow import MlflowClient

    train_and_register(mlflow_server.url, GATE_MODEL, alias="champion", n_rows=4000, seed=0)
    train_and_register(mlflow_server.url, GATE_MODEL, alias="challenger", n_rows=4000, seed=1, max_iter=1)
    train_and_register(mlflow_server.url, FRESH_MODEL, alias="challenger", n_rows=4000, seed=2)
    drifting = train_and_register(
        mlflow_server.url, DRIFT_MODEL, alias="champion", n_rows=4000, seed=0, max_iter=5
    )
    profile = build_profile(make_customers(4000, seed=0), list(FEATURES))
    MlflowClient(tracking_uri=mlflow_server.url).log_dict(drifting["run_id"], profile, PROFILE_ARTIFACT)
    return {"drift_run_id": drifting["run_id"]}


@pytest.fixture
def airflow_env(monkeypatch, mlflow_connection, tmp_path) -> Path:
    return tmp_path


def task_states(dag_run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    return {task_id: str(state) for task_id, state in rows}


def xcom(dag_run, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        (row,) = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        ).all()
        return XComModel.deserialize_value(row)


def test_gate_rejects_a_weaker_challenger_and_the_branch_keeps_the_champion(
    airflow_env, models, mlflow_server, monkeypatch
):
    from mlflow import MlflowClient

    from tests.dags.evaluation_dags import evaluation_gate

    write_customers(airflow_env / "holdout", 3000, seed=11, with_label=True)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{GATE_MODEL}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(airflow_env / "holdout"))

    dag_run = evaluation_gate().test()

    assert dag_run.state == "success"
    states = task_states(dag_run)
    assert (states["keep_champion"], states["promote"]) == ("success", "skipped")
    result = xcom(dag_run, "gate", "return_value")
    assert xcom(dag_run, "gate", "decision") == result["details"]["decision"] == "reject"
    assert (result["details"]["challenger"]["version"], result["details"]["champion"]["version"]) == (
        "2",
        "1",
    )
    assert any("below champion v1" in reason for reason in result["details"]["reasons"])

    client = MlflowClient(tracking_uri=mlflow_server.url)
    run = client.get_run(result["mlflow_run_id"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "comparison.json", "comparison.png", "job_result.json",
    }  # fmt: skip
    assert run.data.tags["ai.decision"] == "reject" and run.data.tags["ai.champion_version"] == "1"
    assert run.data.metrics["challenger_accuracy"] < run.data.metrics["champion_accuracy"]
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.params[f"pinned_model/{GATE_MODEL}/challenger"] == "2"
    assert parent.data.params[f"pinned_model/{GATE_MODEL}/champion"] == "1"


def test_gate_promotes_a_good_model_that_has_no_champion_yet(airflow_env, models, monkeypatch):
    from tests.dags.evaluation_dags import evaluation_gate

    write_customers(airflow_env / "holdout", 3000, seed=12, with_label=True)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{FRESH_MODEL}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(airflow_env / "holdout"))

    dag_run = evaluation_gate().test()

    states = task_states(dag_run)
    assert (states["promote"], states["keep_champion"]) == ("success", "skipped")
    result = xcom(dag_run, "gate", "return_value")
    assert xcom(dag_run, "gate", "decision") == result["details"]["decision"] == "promote"
    assert result["details"]["champion"] is None
    assert result["details"]["reasons"][0] == "no champion yet: absolute thresholds only"


def drift_events(dag_run) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.dags.evaluation_dags import DRIFT_ASSET

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == DRIFT_ASSET.name, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
        return [event.extra for event in events]


def test_drift_asset_event_is_emitted_only_for_shifted_data(airflow_env, models, monkeypatch):
    from tests.dags.evaluation_dags import drift_check

    monkeypatch.setenv("AI_TEST_DRIFT_MODEL", f"{DRIFT_MODEL}@champion")
    monkeypatch.setenv("AI_TEST_CURRENT", str(airflow_env / "current"))
    write_customers(airflow_env / "current", 8000, seed=5, n_files=2)

    steady = drift_check().test()

    assert steady.state == "success"
    assert xcom(steady, "drift", "return_value")["details"]["drift"] is False
    assert drift_events(steady) == []

    shifted = make_customers(8000, seed=6, with_label=False)
    shifted["monthly_charges"] *= 1.6
    shifted["tenure_months"] += 18
    (airflow_env / "shifted").mkdir()
    shifted.to_parquet(airflow_env / "shifted" / "customers.parquet", index=False)
    monkeypatch.setenv("AI_TEST_CURRENT", f"file://{airflow_env / 'shifted'}")

    drifting = drift_check().test()

    assert drifting.state == "success"
    result = xcom(drifting, "drift", "return_value")
    (extra,) = drift_events(drifting)
    assert set(extra["drifted_features"]) == {"monthly_charges", "tenure_months"}
    assert (extra["model_name"], extra["model_version"]) == (DRIFT_MODEL, "1")
    assert extra["mlflow_run_id"] == result["mlflow_run_id"]
    assert extra["max_psi"] == result["details"]["max_psi"] > 0.2
    assert extra["input_digest"] == result["input_digest"]


# --- bad input: refused on the first try, before anything is written ------------------------------


def _failed_once(dag_run, task_id: str) -> None:
    """The DAG run failed and the task ran only its first try."""
    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, task_id) == [1]  # two retries were allowed: none was used


def _refused_before_any_run(mlflow_url: str, dag_run, task_id: str, message: str, log: str) -> None:
    """The task failed on its first try, logged ``message`` and booked no MLflow run."""
    _failed_once(dag_run, task_id)
    assert message in log
    assert dag_run_mlflow_runs(mlflow_url, dag_run.run_id, experiment_name=f"airflow/{dag_run.dag_id}") == []


def _allow_two_retries(monkeypatch, dag_id: str, **kwargs) -> None:
    """The DAG's job task gets ``kwargs`` and two immediate retries."""
    import json

    monkeypatch.setenv("AI_TEST_JOB_KWARGS", json.dumps({dag_id: {**kwargs, "retries": 2, "retry_delay": 0}}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"min_metrics": {"accuracy": "{{ 'high' }}"}},
            "gate: min_metrics['accuracy'] must be a number, got 'high'",
        ),
        (
            {"max_degradation": {"accuracy": "{{ -0.1 }}"}},
            "gate: max_degradation['accuracy'] must be >= 0, got '-0.1'",
        ),
        (
            {"task_type": "{{ 'ranking' }}"},
            "gate: task_type must be one of classification, regression, got 'ranking'",
        ),
    ],
    ids=["threshold-renders-to-text", "degradation-renders-negative", "task-type-renders-to-unknown"],
)
def test_gate_argument_that_renders_to_a_bad_value_fails_once_before_any_run(
    airflow_env, models, mlflow_server, monkeypatch, capfd, kwargs, message
):
    from tests.dags.evaluation_dags import evaluation_gate

    write_customers(airflow_env / "holdout", 500, seed=13, with_label=True)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{GATE_MODEL}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(airflow_env / "holdout"))
    _allow_two_retries(monkeypatch, "evaluation_gate", **kwargs)

    dag_run = evaluation_gate().test()

    _refused_before_any_run(mlflow_server.url, dag_run, "gate", message, capfd.readouterr().out)


def test_gate_on_a_holdout_with_missing_labels_fails_once_naming_the_count(
    airflow_env, models, mlflow_server, monkeypatch, capfd
):
    from tests.dags.evaluation_dags import evaluation_gate

    holdout = make_customers(500, seed=14).astype({"churned": "float64"})
    holdout.loc[[3, 4, 5], "churned"] = float("nan")
    (airflow_env / "holdout").mkdir()
    holdout.to_parquet(airflow_env / "holdout" / "h.parquet", index=False)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{GATE_MODEL}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(airflow_env / "holdout"))
    _allow_two_retries(monkeypatch, "evaluation_gate")

    dag_run = evaluation_gate().test()

    _failed_once(dag_run, "gate")
    assert "label column 'churned' of holdout" in capfd.readouterr().out
    runs = dag_run_mlflow_runs(mlflow_server.url, dag_run.run_id, experiment_name=f"airflow/{dag_run.dag_id}")
    (run,) = [run for run in runs if run.data.tags.get("airflow.task_id") == "gate"]
    assert run.info.status == "FAILED"
    assert "has 3 missing value(s) (null or NaN) of 500 rows" in run.data.tags["ai.error"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"psi_threshold": "{{ 'abc' }}"}, "drift: psi_threshold must be a number, got 'abc'"),
        (
            {"min_drifted_features": "{{ 'two' }}"},
            "drift: min_drifted_features must be a positive integer, got 'two'",
        ),
    ],
    ids=["psi-renders-to-text", "count-renders-to-text"],
)
def test_drift_argument_that_renders_to_a_bad_value_fails_once_before_any_run(
    airflow_env, models, mlflow_server, monkeypatch, capfd, kwargs, message
):
    from tests.dags.evaluation_dags import drift_check

    write_customers(airflow_env / "current", 500, seed=5)
    monkeypatch.setenv("AI_TEST_DRIFT_MODEL", f"{DRIFT_MODEL}@champion")
    monkeypatch.setenv("AI_TEST_CURRENT", str(airflow_env / "current"))
    _allow_two_retries(monkeypatch, "drift_check", **kwargs)

    dag_run = drift_check().test()

    _refused_before_any_run(mlflow_server.url, dag_run, "drift", message, capfd.readouterr().out)
    assert drift_events(dag_run) == []
