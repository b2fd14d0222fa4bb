"""The MLflow runs of Airflow tasks: one parent run per DAG run (elected), one nested run per task."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.hooks.mlflow import filter_value
from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError, RunTag
from airflow_ai_provider.runtime.contract import Tag

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.hooks.mlflow_rest import MlflowRestClient as MlflowClient


@dataclass(frozen=True)
class RunIdentity:
    """Who books an MLflow run: one Airflow DAG run and one task (instance) in it."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    logical_date: str | None = None
    airflow_url: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRun:
    """The MLflow runs booked for one task: the DAG run's parent run and the task's nested run."""

    experiment_id: str
    parent_run_id: str
    run_id: str
    url: str | None


#: Elections of a DAG run's parent run a task holds before it gives up (each lost one was deleted).
_ELECTIONS = 5


def find_runs(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> list[Any]:
    """The runs (at most 50) carrying ``tags``, oldest first: the first is the elected one."""
    filter_string = " and ".join(f"tags.`{key}` = {filter_value(value)}" for key, value in tags.items())
    runs = client.search_runs([experiment_id], filter_string=filter_string, max_results=50)
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def dag_run_tags(who: RunIdentity) -> dict[str, str]:
    """The tags that find the parent run of ``who``'s DAG run."""
    return {Tag.ROLE: "dag_run", Tag.DAG_ID: who.dag_id, Tag.RUN_ID: who.run_id}


def _get_or_create_run(
    client: MlflowClient, experiment_id: str, keys: dict[str, str], extra_tags: dict[str, str]
) -> str:
    """Return the run carrying tags ``keys``, creating it if none exists.

    Tasks of one DAG run may start at the same moment and each create the run. MLflow has no
    create-if-absent, so all of them converge on the earliest one and delete their own extras;
    :func:`finish_task_run` re-checks and re-parents a task run whose parent lost the election.
    """
    existing = find_runs(client, experiment_id, keys)
    if existing:
        return existing[0].info.run_id
    created = client.create_run(experiment_id, tags={**keys, **extra_tags}).info.run_id
    elected = find_runs(client, experiment_id, keys)[0].info.run_id
    if elected != created:
        client.delete_run(created)
    return elected


def _elect_parent_run(client: MlflowClient, experiment_id: str, who: RunIdentity) -> str:
    """Return the DAG run's parent run, creating it if needed."""
    tags = {"mlflow.runName": f"{who.dag_id}/{who.run_id}"}
    if who.logical_date:
        tags[Tag.LOGICAL_DATE] = who.logical_date
    if who.airflow_url:
        tags[Tag.AIRFLOW_URL] = who.airflow_url
    return _get_or_create_run(client, experiment_id, dag_run_tags(who), tags)


def _open_parent_run(client: MlflowClient, experiment_id: str, who: RunIdentity) -> str:
    """Elect the DAG run's parent run and mark it running; return its id.

    A parent elected a moment ago can still lose the election to an older run that a racing task
    created, and be deleted by that task: then the election runs again.
    """
    for _ in range(_ELECTIONS):
        parent_id = _elect_parent_run(client, experiment_id, who)
        try:
            client.update_run(parent_id, status="RUNNING")
            return parent_id
        except MlflowApiError:
            if client.get_run(parent_id).info.lifecycle_stage != "deleted":
                raise
    raise MlflowApiError(
        f"the parent run of DAG run {who.dag_id}/{who.run_id} was deleted {_ELECTIONS} times while booked"
    )


def start_task_run(hook: MlflowHook, who: RunIdentity, experiment_name: str) -> TaskRun:
    """Book (or, on a retry, reopen) the task's nested run under the DAG run's parent run.

    :param hook: the MLflow connection.
    :param who: the DAG run and task the runs belong to.
    :param experiment_name: the experiment, created if missing.
    """
    hook.ask_again()  # a new try asks again
    experiment_id = hook.get_or_create_experiment(experiment_name)
    with hook.client() as client:
        parent_id = _open_parent_run(client, experiment_id, who)
        keys = {
            Tag.ROLE: "task",
            Tag.DAG_ID: who.dag_id,
            Tag.RUN_ID: who.run_id,
            Tag.TASK_ID: who.task_id,
            Tag.MAP_INDEX: str(who.map_index),
        }
        existing = find_runs(client, experiment_id, keys)
        this_try = {Tag.PARENT_RUN_ID: parent_id, "airflow.try_number": str(who.try_number), **who.extra_tags}
        if existing:
            run_id = existing[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in this_try.items()])
        else:
            name = who.task_id if who.map_index < 0 else f"{who.task_id}[{who.map_index}]"
            tags = {**keys, Tag.RUN_NAME: name, **this_try}
            run_id = client.create_run(experiment_id, tags=tags).info.run_id
    return TaskRun(experiment_id, parent_id, run_id, hook.run_url(experiment_id, run_id))


def finish_task_run(hook: MlflowHook, run: TaskRun, who: RunIdentity, *, succeeded: bool) -> None:
    """End the task run and mirror its state on the parent; re-parent it if its parent lost.

    A failed run's end is recorded with the short failure-path budget
    (:data:`~airflow_ai_provider.hooks.mlflow.FAILURE_PATH_TIMEOUT`).
    """
    status = "FINISHED" if succeeded else "FAILED"
    with hook.client(on_failure=not succeeded) as client:
        parents = find_runs(client, run.experiment_id, dag_run_tags(who))
        elected = parents[0].info.run_id if parents else run.parent_run_id
        if elected != run.parent_run_id:
            client.set_tag(run.run_id, Tag.PARENT_RUN_ID, elected)
        for loser in parents[1:]:  # created by a task that raced; its children re-parent likewise
            with contextlib.suppress(MlflowApiError):
                client.delete_run(loser.info.run_id)
        client.set_terminated(run.run_id, status=status)
        client.set_terminated(elected, status=status)


def fail_task_run(hook: MlflowHook, run: TaskRun, who: RunIdentity) -> None:
    """Mark the task run and its parent FAILED on a failure path; never raises, so that the
    task's own error, not an MLflow outage, is what the task reports."""
    try:
        finish_task_run(hook, run, who, succeeded=False)
    except Exception:
        hook.log.warning("Could not mark MLflow run %s failed", run.run_id, exc_info=True)
