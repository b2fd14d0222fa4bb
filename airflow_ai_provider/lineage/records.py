"""What one of the provider's MLflow task runs records: its task, DAG run, state and job result."""

from __future__ import annotations

import json
import tempfile
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.runtime.contract import Artifact, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: A DAG run as recorded: ``(dag_id, run_id)``.
DagRunId = tuple[str, str]

_RUN_STATES = {"FINISHED": "success", "FAILED": "failed", "RUNNING": "running", "KILLED": "killed"}


def job_result(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """The ``job_result.json`` an AI task logged into its run, or ``None`` when it cannot be read."""
    with tempfile.TemporaryDirectory(prefix="ai-lineage-") as scratch:
        try:
            path = client.download_artifacts(run_id, Artifact.JOB_RESULT, scratch)
            with open(path) as handle:
                return json.load(handle)
        except Exception:
            return None


def run_state(run: Run) -> str:
    """The MLflow run's status in Airflow's words (``success``, ``failed``, ...)."""
    return _RUN_STATES.get(run.info.status, run.info.status.lower())


def task_name(tags: dict[str, str]) -> str:
    """The task as Airflow shows it: ``score`` or, when mapped, ``score[1]``."""
    task, map_index = tags.get(Tag.TASK_ID, "?"), tags.get(Tag.MAP_INDEX, "-1")
    return task if map_index in ("", "-1") else f"{task}[{map_index}]"


def dag_run_of(tags: dict[str, str]) -> DagRunId | None:
    """The DAG run named by ``airflow.dag_id`` and ``airflow.run_id``, or ``None``."""
    if tags.get(Tag.DAG_ID) and tags.get(Tag.RUN_ID):
        return tags[Tag.DAG_ID], tags[Tag.RUN_ID]
    return None


def split_dag_run(value: str) -> DagRunId | None:
    """A DAG run recorded as one ``<dag_id>/<run_id>`` tag value, or ``None``."""
    dag_id, _, run_id = value.partition("/")
    return (dag_id, run_id) if dag_id and run_id else None


def where(tags: dict[str, str]) -> str:
    """``DAG <dag_id> run <run_id>``, for the hop text."""
    dag_run = dag_run_of(tags)
    return f"DAG {dag_run[0]} run {dag_run[1]}" if dag_run else "no Airflow DAG run recorded"
