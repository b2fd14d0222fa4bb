"""Read the results AI job tasks stored for a DAG run (from the Airflow metadata database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskOutcome:
    """One task instance of a DAG run: its state and the job result it returned, if any."""

    task_id: str
    map_index: int
    state: str | None
    result: dict[str, Any] | None


def dag_run_outcomes(dag_id: str, run_id: str) -> list[TaskOutcome]:
    """Task instances of one DAG run with their returned results, ordered by task and map index."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        instances = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all()
        values = {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in rows}
        outcomes = [
            TaskOutcome(ti.task_id, ti.map_index, ti.state, values.get((ti.task_id, ti.map_index)))
            for ti in instances
        ]
    return sorted(outcomes, key=lambda outcome: (outcome.task_id, outcome.map_index))
