"""Mark a task's MLflow runs failed when the Airflow task process dies before it could.

The operator starts ``python -m airflow_ai_provider.runtime.run_guard`` in a session of its own when
it books the task's MLflow run, writes the run's identity as one JSON line to the guard's standard
input, and writes ``done`` when it has finished the run itself (success, failure or deferral). If
the task process dies first (``kill -9``, OOM killer, a lost worker), the pipe closes without
``done``: the guard then marks the task run ``FAILED`` and, when no other task of the DAG run is
still running, the DAG run's parent run too. A retry that already reopened the run (it sets a newer
``airflow.try_number``) is left alone. Credentials reach the guard through its environment only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from airflow_ai_provider.runtime.contract import RUN_GUARD_DONE, Tag

KILLED_MESSAGE = "the Airflow task process ended before it finished this run (killed or lost)"


def close_orphaned_runs(config: dict[str, Any]) -> list[str]:
    """Mark the guarded runs ``FAILED`` if they are still ``RUNNING`` for the guarded try."""
    from airflow_ai_provider.runtime import tracking
    from airflow_ai_provider.runtime.contract.spec import MlflowRef

    tracking.set_process_defaults()
    client = tracking.client(MlflowRef(config["tracking_uri"], config.get("registry_uri")))
    closed: list[str] = []
    run = client.get_run(config["run_id"])
    same_try = run.data.tags.get(Tag.TRY_NUMBER) == str(config.get("try_number"))
    if run.info.status == "RUNNING" and same_try:
        client.set_tag(run.info.run_id, Tag.ERROR, KILLED_MESSAGE)
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    parent_id = config.get("parent_run_id")
    if closed and parent_id:
        siblings = client.search_runs(
            [run.info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'",
            max_results=1,
        )
        if not siblings and client.get_run(parent_id).info.status == "RUNNING":
            client.set_terminated(parent_id, status="FAILED")
            closed.append(parent_id)
    return closed


def main() -> int:
    first = sys.stdin.readline()
    if not first.strip():
        return 0
    config = json.loads(first)
    if sys.stdin.readline().strip() == RUN_GUARD_DONE:
        return 0
    try:
        closed = close_orphaned_runs(config)
    except Exception as err:  # nobody is left to tell but the guard's own log
        print(f"run guard: could not close MLflow run {config.get('run_id')}: {err}", file=sys.stderr)
        return 1
    if closed:
        print(
            f"run guard: marked MLflow run(s) {', '.join(closed)} FAILED: {KILLED_MESSAGE}", file=sys.stderr
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
