"""Run the job runtime as a subprocess of the Airflow worker: the local execution mode.

The command is the one a pod would run; only the interpreter may differ (another virtualenv can
mirror a per-model image). Output is streamed into the task log line by line. The child runs in its
own process group and is killed with it when the task times out, is killed, or the worker dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_ai_provider.exceptions import AiProviderConfigError, JobFailedError

RESULT_PATH_ENV = "AI_PROVIDER_RESULT_PATH"
_PR_SET_PDEATHSIG = 1
_KILL_GRACE_SECONDS = 10.0


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the child if the worker process dies first (no orphan jobs)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def terminate_process_group(process: subprocess.Popen, grace: float = _KILL_GRACE_SECONDS) -> None:
    """SIGTERM the child's process group, then SIGKILL whatever is left after ``grace`` seconds."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait()


class LocalJobRunner:
    """Start one runtime command, stream its output, and return its JSON result.

    :param argv: the runtime command (interpreter first).
    :param env: extra environment for the child (credentials, endpoints); merged over the worker's.
    :param logger: where each output line goes.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], logger: logging.Logger) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log = logger
        self.process: subprocess.Popen | None = None

    def run(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="ai-job-") as scratch:
            result_path = Path(scratch) / "return.json"
            env = {**os.environ, **self.env, RESULT_PATH_ENV: str(result_path), "PYTHONUNBUFFERED": "1"}
            started = time.monotonic()
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    bufsize=1,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except FileNotFoundError:
                raise AiProviderConfigError(
                    f"python interpreter {self.argv[0]!r} for the local runtime does not exist"
                ) from None
            try:
                assert self.process.stdout is not None
                for line in self.process.stdout:
                    self.log.info("%s", line.rstrip("\n"))
                returncode = self.process.wait()
            finally:
                # Reached on success too; on a timeout or kill it stops the whole process group.
                self.kill()
            self.log.info("Runtime exited with code %s after %.1f s", returncode, time.monotonic() - started)
            return self._read_result(result_path, returncode)

    def kill(self) -> None:
        """Stop the runtime and everything it started. Safe to call more than once."""
        if self.process is not None and self.process.poll() is None:
            self.log.warning("Stopping runtime process group %s", self.process.pid)
            terminate_process_group(self.process)
        elif self.process is not None:
            # The runtime itself ended; make sure nothing it started lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def _read_result(self, path: Path, returncode: int) -> dict[str, Any]:
        if not path.exists():
            raise JobFailedError(
                f"runtime exited with code {returncode} without writing a result: see the log above"
            )
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise JobFailedError(f"runtime wrote an unreadable result ({err}): see the log above") from None
