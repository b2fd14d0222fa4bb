"""A human's answer to a waiting HITL task, given from a background thread while ``dag.test()``
owns the main thread (it needs it for signals).

``dag.test()`` parks a HITL task in ``AWAITING_INPUT`` and waits, without a deadline, for something
outside it to move the task on; it runs no trigger and so no response timeout. When the answer
fails, or leaves the task waiting, :class:`HumanInput` fails the waiting task instances, so the DAG
run ends and the test reports the error instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests._support.airflow_records import awaiting_input_runs, fail_awaiting_input, wait_awaiting_input

#: How long the task may still wait for input once the answer was given.
MOVED_ON_S = 60.0


class HumanInput:
    """Once a task of ``dag_id`` waits for input (within ``wait_s``), calls ``respond(run_id)``
    in a background thread and waits for the task to move on.

    :param dag_id: the DAG whose run ``dag.test()`` is about to start.
    :param respond: gives the answer (the Core API's HITL route, the scheduler's timeout sweep...);
        what it returns is :meth:`result`'s value.
    :param wait_s: how long the run may take to reach its HITL task.
    """

    def __init__(self, dag_id: str, respond: Callable[[str], Any], wait_s: float = 120.0) -> None:
        self.dag_id = dag_id
        self._respond = respond
        self._wait_s = wait_s
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        try:
            run_id = wait_awaiting_input(self.dag_id, timeout=self._wait_s)
            self._value = self._respond(run_id)
            deadline = time.monotonic() + MOVED_ON_S
            while run_id in awaiting_input_runs(self.dag_id):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.dag_id}/{run_id} still waits for input after the answer")
                time.sleep(0.5)
        except BaseException as err:  # raised by result(), once dag.test() has returned
            self._error = err
            fail_awaiting_input(self.dag_id)

    def result(self, timeout: float = 60.0) -> Any:
        """What ``respond`` returned; raises what went wrong in the background thread."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the answer to {self.dag_id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


def timeout_sweep(after_s: float) -> Callable[[str], None]:
    """A ``respond`` for :class:`HumanInput` where nobody answers: ``after_s`` seconds into the wait
    (past the task's response timeout), the scheduler's own sweep gives the default answer."""

    def sweep(run_id: str) -> None:
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        time.sleep(after_s)
        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()

    return sweep
