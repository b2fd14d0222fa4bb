"""Notifications of the DAG templates, run with ``dag.test()`` against a real ``mlflow server`` and
Airflow's own Core API: the review notifier is called with the task context when the review starts
waiting, only the assigned reviewer may answer, and a task that fails calls the failure notifier.
The templates are configured by their config lines only (``tests/dags/notified_template_dags.py``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests._support.airflow_records import dag_run_outcomes, task_tries
from tests._support.churn_sample import train_and_register, write_customers
from tests._support.core_api import in_process_core_api
from tests._support.human_input import HumanInput
from tests.dags.notified_template_dags import REVIEWER, notifications


@pytest.fixture(scope="module")
def notified_champion(mlflow_server) -> str:
    """``notified_churn@champion``: the model the notified batch-inference template scores with."""
    model = train_and_register(mlflow_server.url, "notified_churn", alias="champion", n_rows=3_000)
    return str(model["version"])


@pytest.fixture
def notification_log(tmp_path, monkeypatch) -> Path:
    """The file ``FileNotifier`` appends its calls to."""
    path = tmp_path / "notifications.jsonl"
    monkeypatch.setenv("AI_TEST_NOTIFICATIONS", str(path))
    return path


@pytest.fixture
def api_as(monkeypatch):
    """Airflow's Core API app, in-process, with the Simple auth manager (not everyone an admin's
    stand-in): ``api_as(user)`` answers requests as that user."""
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:admin,bob:admin")
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    def as_user(username: str) -> dict[str, str]:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role="admin"))
        return {"Authorization": f"Bearer {token}"}

    with in_process_core_api() as client:
        yield client, as_user


def _hitl_assignees(dag_id: str, run_id: str, task_id: str) -> list[dict[str, str]] | None:
    """The assigned users the HITL detail record of the task instance holds in the Airflow DB."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(
            select(HITLDetail.assignees)
            .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
            .where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )


def test_review_notifies_when_it_waits_only_the_assigned_reviewer_answers_and_a_hold_notifies_the_failure(
    notified_champion, mlflow_connection, notification_log, api_as
):
    from tests.dags.notified_template_dags import notified_batch_inference

    client, as_user = api_as
    root = Path(os.environ["AI_TEMPLATES_DATA_ROOT"]) / "notified"
    shutil.rmtree(root, ignore_errors=True)
    write_customers(str(root / "scoring" / "customers"), 2_000, seed=5, n_files=1)
    dag = notified_batch_inference()
    seen: dict = {}

    def reviewer(run_id: str) -> None:
        seen["while_waiting"] = notifications(notification_log)
        seen["assignees"] = _hitl_assignees(dag.dag_id, run_id, "review_low_confidence")
        url = f"/api/v2/dags/{dag.dag_id}/dagRuns/{run_id}/taskInstances/review_low_confidence/-1/hitlDetails"
        answer = {"chosen_options": ["Hold"], "params_input": {}}
        seen["bob"] = client.patch(url, json=answer, headers=as_user("bob"))
        seen["alice"] = client.patch(url, json=answer, headers=as_user("alice"))

    human = HumanInput(dag.dag_id, reviewer, wait_s=300)
    dag_run = dag.test(run_conf={"confidence_threshold": 0.99})
    human.result()

    # The review notifier ran once, with the review task's context, before anyone answered.
    (waiting,) = seen["while_waiting"]
    assert waiting["notifier"] == "review" and waiting["task_id"] == "review_low_confidence"
    assert waiting["run_id"] == dag_run.run_id and waiting["exception"] is None
    assert waiting["message"] == f"review_low_confidence of {dag_run.run_id} waits for an answer"

    # The assigned users reached the HITL detail; someone else is refused, the reviewer is heard.
    assert seen["assignees"] == [REVIEWER]
    assert seen["bob"].status_code == 403, seen["bob"].text
    assert seen["alice"].status_code == 200, seen["alice"].text
    assert seen["alice"].json()["responded_by"]["id"] == "alice"

    # "Hold" fails publish, which calls the failure notifier with its context and error; no other task.
    assert dag_run.state == "failed"
    states = {o.task_id: o.state for o in dag_run_outcomes(dag.dag_id, dag_run.run_id)}
    assert states["review_low_confidence"] == "success" and states["publish"] == "failed"
    calls = notifications(notification_log)
    assert [(call["notifier"], call["task_id"]) for call in calls] == [
        ("review", "review_low_confidence"),
        ("failure", "publish"),
    ]
    assert calls[1]["run_id"] == dag_run.run_id
    assert "a reviewer put these predictions on hold" in calls[1]["exception"]
    assert calls[1]["message"] == "publish failed in notified_batch_inference"


def test_a_task_that_fails_for_good_calls_the_failure_notifier_once_with_its_context(
    mlflow_connection, notification_log, tmp_path
):
    from tests.dags.notified_template_dags import notified_ingest

    landing = tmp_path / "landing"
    landing.mkdir()
    dag_run = notified_ingest().test(run_conf={"landing": str(landing)})

    assert dag_run.state == "failed"
    assert task_tries(dag_run.run_id, "ingest") == [1]  # bad input: its two retries unused
    (call,) = notifications(notification_log)  # validate, upstream_failed, calls nothing
    assert call["notifier"] == "failure" and call["task_id"] == "ingest"
    assert call["run_id"] == dag_run.run_id and call["try_number"] == 1
    assert f"no .parquet or .csv files in the landing folder {landing}" in call["exception"]
    assert call["message"] == "ingest failed in notified_ingest"
