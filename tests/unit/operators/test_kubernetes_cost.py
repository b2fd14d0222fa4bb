"""The cost of a task in kubernetes mode: the pod's declared resources times its container's run time.

Driven through KubernetesPodOperator's own code against the loopback fake API server of
``test_kubernetes_execution`` (no real cluster can run here); its kubelet gives the main container a
terminated state of 120 s. MLflow is a real SQLite store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_ai_provider import cost
from airflow_ai_provider.operators.data_validation import DataValidationOperator
from tests.unit.operators import test_kubernetes_execution as k8s
from tests.unit.operators.test_kubernetes_execution import fake_k8s, mlflow_store  # noqa: F401 (fixtures)

RESOURCES = {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}


@pytest.fixture
def timed_pods(monkeypatch):
    """The fake kubelet's terminated main container ran from 06:00:00 to 06:02:00."""
    final_status = k8s._final_status

    def with_times(outcome: str, image: str) -> dict[str, Any]:
        status = final_status(outcome, image)
        for container in status["containerStatuses"]:
            terminated = container["state"].get("terminated")
            if terminated is not None:
                terminated.update(startedAt="2025-03-01T06:00:00Z", finishedAt="2025-03-01T06:02:00Z")
        return status

    monkeypatch.setattr(k8s, "_final_status", with_times)


def _operator(
    fake: k8s.FakeKubernetes, tmp_path: Path, task_id: str, **kwargs: Any
) -> DataValidationOperator:
    return DataValidationOperator(
        task_id=task_id,
        input_uri="s3://data/customers/",
        expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}],
        execution_mode="kubernetes",
        image=k8s.IMAGE,
        namespace="ml",
        kubernetes_conn_id=None,
        config_file=fake.kubeconfig(tmp_path / f"kubeconfig-{task_id}.json"),
        startup_check_interval_seconds=0,
        container_resources=RESOURCES,
        **kwargs,
    )


def _context(task_id: str) -> dict[str, Any]:
    context = k8s._context()
    context["ti"].task_id = task_id
    return context


def test_a_pod_tasks_cost_is_its_requests_times_its_run_time_on_its_run_the_parent_and_the_result(
    fake_k8s,  # noqa: F811
    mlflow_store,  # noqa: F811
    timed_pods,
    tmp_path,
    monkeypatch,
):
    import mlflow

    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_CPU_HOUR", "0.36")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_GB_MEMORY_HOUR", "0.036")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_GPU_HOUR", "3.6")
    fake_k8s.result = k8s._validation_result()

    cpu_only = _operator(fake_k8s, tmp_path, "check").execute(_context("check"))
    with_gpu = _operator(fake_k8s, tmp_path, "check_gpu", gpus=1).execute(_context("check_gpu"))

    # 0.5 cores and 2 GiB requested (not the 4Gi limit) for 120 s; the GPU is a limit only.
    assert cpu_only["cost"] == {
        "cpu_seconds": 60.0,
        "memory_gb_seconds": 240.0,
        "gpu_seconds": 0.0,
        "estimate": pytest.approx(0.006 + 0.0024),
        "currency": "USD",
    }
    assert with_gpu["cost"]["gpu_seconds"] == 120.0
    assert with_gpu["cost"]["estimate"] == pytest.approx(0.006 + 0.0024 + 0.12)
    (sent_gpu,) = [pod for pod in fake_k8s.created if pod["metadata"]["name"].startswith("check-gpu")]
    assert sent_gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    client = mlflow.MlflowClient()
    task_run = client.get_run(cpu_only["mlflow_run_id"])
    assert task_run.data.metrics[cost.CPU_SECONDS] == 60.0
    assert task_run.data.metrics[cost.MEMORY_GB_SECONDS] == 240.0
    assert task_run.data.tags[cost.CURRENCY_TAG] == "USD"
    parent = client.get_run(task_run.data.tags["mlflow.parentRunId"])
    assert parent.data.metrics[cost.TASKS] == 2
    assert parent.data.metrics[cost.CPU_SECONDS] == 120.0
    assert parent.data.metrics[cost.GPU_SECONDS] == 120.0
    assert parent.data.metrics[cost.ESTIMATE] == pytest.approx(
        cpu_only["cost"]["estimate"] + with_gpu["cost"]["estimate"]
    )


def test_a_retried_pod_task_counts_once_in_its_dag_runs_sum(
    fake_k8s,  # noqa: F811
    mlflow_store,  # noqa: F811
    timed_pods,
    tmp_path,
):
    import mlflow

    fake_k8s.result = k8s._validation_result()
    first = _operator(fake_k8s, tmp_path, "check").execute(_context("check"))
    retry = _context("check")
    retry["ti"].try_number = 2
    second = _operator(fake_k8s, tmp_path, "check").execute(retry)

    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    client = mlflow.MlflowClient()
    parent_id = client.get_run(second["mlflow_run_id"]).data.tags["mlflow.parentRunId"]
    parent = client.get_run(parent_id)
    assert parent.data.metrics[cost.TASKS] == 1
    assert parent.data.metrics[cost.CPU_SECONDS] == 60.0
