"""The plugin's listener finds the interpreters of a DAG's local AI tasks (mapped ones included) and
skips what would not run a local job: plain tasks, kubernetes mode, and arguments still templated.
Real DAG and operator objects; nothing runs."""

from __future__ import annotations

import sys

from airflow.sdk import DAG, task

from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.plugin import AiProviderPlugin, WarmStartListener, local_interpreters


def _score(task_id: str, **kwargs) -> BatchInferenceOperator:
    return BatchInferenceOperator(
        task_id=task_id, model="churn/1", input_uri="/in", output_uri="/out", **kwargs
    )


def test_the_local_ai_tasks_of_a_dag_name_their_interpreters_and_plain_or_kubernetes_tasks_none():
    with DAG("interpreters", schedule=None) as dag:

        @task
        def plain() -> None:
            return None

        plain()
        _score("default_python", execution_mode="local")
        _score("own_python", execution_mode="local", python="/opt/model-env/bin/python")
        _score("in_a_pod", execution_mode="kubernetes", python="/opt/pod-only/bin/python")
        DataValidationOperator.partial(
            task_id="mapped",
            expectations=[],
            execution_mode="local",
            python="/opt/gx/bin/python",
        ).expand(input_uri=["/in/a", "/in/b"])

    assert local_interpreters(list(dag.tasks)) == {
        sys.executable,
        "/opt/model-env/bin/python",
        "/opt/gx/bin/python",
    }


def test_a_task_whose_mode_or_interpreter_is_still_a_template_is_skipped():
    with DAG("templated", schedule=None) as dag:
        _score("templated_mode", execution_mode="{{ params.mode }}")
        _score("templated_python", execution_mode="local", python="{{ var.value.python }}")

    assert local_interpreters(list(dag.tasks)) == set()


def test_the_configured_execution_mode_applies_to_a_task_that_names_none(monkeypatch):
    with DAG("configured", schedule=None) as dag:
        _score("configured")

    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "kubernetes")
    assert local_interpreters(list(dag.tasks)) == set()
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "local")
    assert local_interpreters(list(dag.tasks)) == {sys.executable}


def test_the_listener_never_fails_a_task(caplog):
    class Broken:
        @property
        def task(self):
            raise RuntimeError("no task here")

    with caplog.at_level("DEBUG", logger="airflow_ai_provider.plugin"):
        WarmStartListener().on_task_instance_running(previous_state=None, task_instance=Broken())
    assert "Warm runtime server not started early: no task here" in caplog.text


def test_the_plugin_is_registered_with_its_listener():
    from importlib.metadata import entry_points

    points = entry_points(group="airflow.plugins")
    (entry,) = [point for point in points if point.value.startswith("airflow_ai_provider")]
    assert entry.load() is AiProviderPlugin
    assert [type(listener) for listener in AiProviderPlugin.listeners] == [WarmStartListener]
