"""The templates' notification settings: as shipped they notify nobody, assign nobody and have no
failure callback; configured, the approval and review steps and every task take them from the
config block (the calls themselves: tests/integration/test_template_notifications.py)."""

from __future__ import annotations

import pytest
from airflow.providers.standard.operators.hitl import HITLOperator

TEMPLATES = ("churn_ingest", "churn_retrain", "churn_batch_inference", "churn_drift_monitor")


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_as_shipped_notify_nobody_assign_nobody_and_call_nothing_on_failure(template):
    import importlib

    dag = importlib.import_module(f"dag_templates.{template}").dag
    for task in dag.tasks:
        assert not task.on_failure_callback, (template, task.task_id)
        if isinstance(task, HITLOperator):
            assert task.notifiers == [] and task.assigned_users is None, (template, task.task_id)


def test_retrain_approval_takes_its_notifiers_and_assigned_users_from_the_config_block():
    from tests.dags.notified_template_dags import REVIEWER, notified_retrain

    dag = notified_retrain()
    approve = dag.get_task("approve")
    assert [notifier.name for notifier in approve.notifiers] == ["approval"]
    assert approve.assigned_users == [REVIEWER]
    assert [task.task_id for task in dag.tasks if isinstance(task, HITLOperator)] == ["approve"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_task_of_a_template_calls_the_configured_failure_notifier(template):
    from tests.dags.adapted_template_dags import adapted_template
    from tests.dags.notified_template_dags import FileNotifier

    dag = adapted_template(
        template, {"ON_FAILURE_CALLBACK": 'FileNotifier("failure")'}, {"FileNotifier": FileNotifier}
    )
    callbacks = {task.task_id: task.on_failure_callback for task in dag.tasks}
    assert all(len(found) == 1 and found[0].name == "failure" for found in callbacks.values()), callbacks
