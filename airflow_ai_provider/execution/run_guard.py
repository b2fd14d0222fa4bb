"""Start and release the guard that closes a task's MLflow runs if the task process dies."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.runtime.contract import RUN_GUARD_DONE, RUN_GUARD_MODULE

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.mlflow_runs import RunIdentity, TaskRun


class TaskRunGuard:
    """A ``run_guard`` process bound to this task process by a pipe (see the runtime module).

    :param identity: what the guard needs to find the runs: ``tracking_uri``, ``registry_uri``,
        ``run_id``, ``parent_run_id`` and ``try_number``. Never credentials.
    :param env: credentials and timeouts for MLflow, added to the guard's environment.
    """

    def __init__(self, identity: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.process: subprocess.Popen | None = None
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", RUN_GUARD_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=None,
                env={**os.environ, **env},
                text=True,
                start_new_session=True,  # outlives a kill of the task's process group, by design
            )
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(dict(identity)) + "\n")
            self.process.stdin.flush()
        except OSError:
            self.process = None  # the guard is a safety net; the task runs without it

    @classmethod
    def for_task_run(cls, hook: MlflowHook, run: TaskRun, who: RunIdentity) -> TaskRunGuard:
        """Guard the runs ``hook`` booked for task ``who``."""
        identity = {
            "tracking_uri": hook.tracking_uri,
            "registry_uri": hook.registry_uri,
            "run_id": run.run_id,
            "parent_run_id": run.parent_run_id,
            "try_number": who.try_number,
        }
        return cls(identity, hook.runtime_env())

    def __enter__(self) -> TaskRunGuard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """The task finished its runs itself: let the guard exit without touching them."""
        process, self.process = self.process, None
        if process is None or process.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            process.stdin.write(RUN_GUARD_DONE + "\n")
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process.poll() is None:
            process.kill()
            process.wait()
