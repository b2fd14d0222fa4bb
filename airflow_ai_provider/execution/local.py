"""Run the job runtime as a subprocess of the Airflow worker: the local execution mode.

The command is the one a pod would run; only the interpreter may differ (another virtualenv can
mirror a per-model image). Output is streamed into the task log line by line. The child runs in its
own process group and is killed with it when the task times out, is killed, or the worker dies.

Nothing of a try outlives it. The runtime ends its own leftovers (it is a child subreaper); as a
catch-all for a runtime killed with SIGKILL, every process of the job carries a per-task-instance
marker in its environment (:data:`~airflow_ai_provider.runtime.contract.MARKER_ENV`) and the runner
ends the processes of this user that carry it, after the runtime exits and before the next try
starts. The runtime's temporary files and model copies go to a per-task-instance scratch folder
(``$TMPDIR`` of the runtime), the same for every try of a task instance: it is removed at the end
of every try and at the start of the next, so a try killed with SIGKILL leaves nothing for long.
Downloaded model versions are the exception: they go to the worker's model cache
(``[ai_provider] model_cache_dir``, passed as ``$AI_PROVIDER_MODEL_CACHE``), shared by every task.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_ai_provider.config import model_cache_env, warm_runtime_enabled, warm_runtime_idle_seconds
from airflow_ai_provider.exceptions import AiProviderConfigError, JobFailedError
from airflow_ai_provider.execution import warm_runtime
from airflow_ai_provider.runtime.contract import EXIT_INPUT, MARKER_ENV, RESULT_PATH_ENV, processes

#: The OpenTelemetry variables that name an OTLP endpoint (the ones the runtime's spans read).
OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: Seconds the runtime gets between SIGTERM and SIGKILL (it stops within 7 s, see the runtime).
_KILL_GRACE_SECONDS = 10.0
_ERROR_PREFIX = "airflow-ai-runtime error: "
#: Seconds the log reader gets to drain the runtime's output once the runtime has exited.
_DRAIN_SECONDS = 5.0


def local_trace_env(context: Mapping[str, Any] | None) -> dict[str, str]:
    """Trace context for a local runtime, as a pod gets it: ``TRACEPARENT``/``TRACESTATE`` of the
    task, and, when the worker's environment names no OTLP endpoint and Airflow's ``[traces]
    otel_on`` is set, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` built from ``otel_host``, ``otel_port``
    and ``otel_ssl_active`` (the endpoint Airflow sends its own spans to)."""
    from airflow_ai_provider.kubernetes.pod_env import trace_carrier, trace_env

    env = trace_env(trace_carrier(context["ti"])) if context else {}
    if any(os.environ.get(name) for name in OTLP_ENDPOINT_ENVS):
        return env
    from airflow.configuration import conf

    if conf.getboolean("traces", "otel_on", fallback=False):
        scheme = "https" if conf.getboolean("traces", "otel_ssl_active", fallback=False) else "http"
        host = conf.get("traces", "otel_host", fallback="localhost")
        port = conf.get("traces", "otel_port", fallback="4318")
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{scheme}://{host}:{port}/v1/traces"
    return env


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the child if the worker process dies first (no orphan jobs)."""
    processes.prctl(processes.PR_SET_PDEATHSIG, signal.SIGKILL)


def default_scratch_root() -> Path:
    """``$TMPDIR/airflow-ai-<uid>`` of the worker: the parent of the per-task-instance scratch folders."""
    return Path(tempfile.gettempdir()) / f"airflow-ai-{os.getuid()}"


def terminate_process_group(
    process: subprocess.Popen | warm_runtime.WarmJob, grace: float = _KILL_GRACE_SECONDS
) -> None:
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


def _runtime_env(extra: Mapping[str, str], result_path: Path, marker: str, temp_dir: Path) -> dict[str, str]:
    """The whole environment of a local runtime: the worker's, the model cache's, ``extra``, and the
    try's result file, process marker and temporary folder."""
    return {
        **os.environ,
        **model_cache_env(),
        **extra,
        RESULT_PATH_ENV: str(result_path),
        "PYTHONUNBUFFERED": "1",
        MARKER_ENV: marker,
        **dict.fromkeys(("TMPDIR", "TMP", "TEMP"), str(temp_dir)),
    }


def prestart_warm_runtime(python: str, scratch_root: str | os.PathLike[str] | None = None) -> bool:
    """Start the warm runtime server that forks this process's local jobs with interpreter ``python``,
    in the background (:func:`.warm_runtime.prestart`), so that the first job need not wait for its
    preload; return whether one was started. Nothing happens when the warm runtime is off or
    ``python`` is a wrapper script.

    :param python: the jobs' interpreter.
    :param scratch_root: as for :class:`LocalJobRunner`.
    :raises warm_runtime.WarmRuntimeUnavailable: the server cannot be started here.
    """
    if not warm_runtime_enabled() or warm_runtime.is_script(python):
        return False
    root = Path(scratch_root) if scratch_root else default_scratch_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = _runtime_env({}, root / "return.json", "", root)  # only its import-time part names the server
    return warm_runtime.prestart(
        python, env, root=root / warm_runtime.FOLDER, idle_seconds=warm_runtime_idle_seconds()
    )


class LocalJobRunner:
    """Start one runtime command, stream its output, and return its JSON result.

    :param argv: the runtime command (interpreter first).
    :param env: extra environment for the child (credentials, endpoints); merged over the worker's.
    :param logger: where each output line goes.
    :param task_key: identifies the task instance across its tries (see
        :func:`~airflow_ai_provider.operators.task_run.task_instance_key`); its digest names the
        scratch folder and is the process marker. Without it both are new for each run (nothing is
        found from an earlier try).
    :param scratch_root: parent of the scratch folders (default :func:`default_scratch_root`).
    :param warm: start a runtime command in the warm runtime server (:mod:`.warm_runtime`, its
        sockets under ``<scratch_root>/warm-runtime``); default ``[ai_provider] warm_runtime``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        logger: logging.Logger,
        task_key: str | None = None,
        scratch_root: str | os.PathLike[str] | None = None,
        warm: bool | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log = logger
        self.process: subprocess.Popen | warm_runtime.WarmJob | None = None
        self.warm = warm_runtime_enabled() if warm is None else warm
        self.marker = (
            hashlib.sha256(task_key.encode()).hexdigest()[:32] if task_key else secrets.token_hex(16)
        )
        self.scratch_root = Path(scratch_root) if scratch_root else default_scratch_root()
        self.scratch = self.scratch_root / self.marker
        self._last_error = ""
        #: What the kernel counted for the runtime once reaped (``wait4``), and its wall seconds.
        self.rusage: Any = None
        self.wall_seconds = 0.0

    def run(self) -> dict[str, Any]:
        self.clean_up("an earlier try")
        temp_dir = self._make_scratch()
        result_path = self.scratch / "return.json"
        env = _runtime_env(self.env, result_path, self.marker, temp_dir)
        started = time.monotonic()
        reader: threading.Thread | None = None
        try:
            self.process = self._start(env)
            # A reader thread: a helper that inherited the runtime's stdout may hold the pipe open
            # after the runtime has exited, and must not keep the task waiting for the end of it.
            reader = threading.Thread(target=self._stream, args=(self.process.stdout,), daemon=True)
            reader.start()
            returncode = self._wait()
            reader.join(timeout=_DRAIN_SECONDS)
            self.log.info("Runtime exited with code %s after %.1f s", returncode, time.monotonic() - started)
            return self._read_result(result_path, returncode)
        finally:
            # Reached on success too; on a timeout or kill it stops the whole process group first.
            self.kill()
            self.clean_up("this try")
            if reader is not None:
                reader.join(timeout=_DRAIN_SECONDS)

    def _start(self, env: dict[str, str]) -> subprocess.Popen | warm_runtime.WarmJob:
        """Start the runtime: forked by the warm runtime server when it is on and can take the job,
        else as a new process (always for an interpreter that is a wrapper script)."""
        forkable = self.warm and warm_runtime.is_runtime_command(self.argv)
        if forkable and warm_runtime.is_script(self.argv[0]):
            self.log.debug("Runtime started as a new process: its interpreter %s is a script", self.argv[0])
        elif forkable:
            try:
                job = warm_runtime.start_job(
                    self.argv,
                    env,
                    root=self.scratch_root / warm_runtime.FOLDER,
                    idle_seconds=warm_runtime_idle_seconds(),
                )
                self.log.info(
                    "Runtime forked by the warm runtime server %s as process %s", job.server_pid, job.pid
                )
                return job
            except warm_runtime.WarmRuntimeUnavailable as err:
                self.log.warning("Warm runtime not used, starting the runtime as a new process: %s", err)
        try:
            return subprocess.Popen(
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

    def _wait(self) -> int:
        """Reap the runtime with ``wait4``, keeping its resource usage; return its exit code."""
        assert self.process is not None
        started = time.monotonic()
        if isinstance(self.process, warm_runtime.WarmJob):  # reaped by the server, which sent the usage
            returncode = self.process.wait()
            self.rusage, self.wall_seconds = self.process.rusage, time.monotonic() - started
            return returncode
        try:
            _, status, self.rusage = os.wait4(self.process.pid, 0)
            self.process.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere (a concurrent kill's poll): no usage then
            self.process.wait()
        self.wall_seconds = time.monotonic() - started
        return int(self.process.returncode)

    def _stream(self, stdout: Any) -> None:
        """Copy the runtime's output into the task log, line by line, until the pipe closes."""
        for line in stdout:
            line = line.rstrip("\n")
            if line.startswith(_ERROR_PREFIX):
                self._last_error = line[len(_ERROR_PREFIX) :]
            self.log.info("%s", line)

    def kill(self) -> None:
        """Stop the runtime and everything it started. Safe to call more than once."""
        if self.process is not None and self.process.poll() is None:
            self.log.warning("Stopping runtime process group %s", self.process.pid)
            terminate_process_group(self.process)
        elif self.process is not None:
            # The runtime itself ended; make sure nothing it started lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def clean_up(self, whose: str) -> None:
        """End the processes carrying this task instance's marker and remove its scratch folder."""
        ended = processes.end_processes(lambda: processes.marked(self.marker))
        if ended:
            self.log.warning(
                "Ended %d process(es) left by %s of this task: %s",
                len(ended),
                whose,
                processes.describe(ended),
            )
        if self.scratch.exists():
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _make_scratch(self) -> Path:
        """Create the scratch folder (and its private parent) for this try; return its ``tmp``."""
        try:
            self.scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.scratch_root.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise AiProviderConfigError(
                    f"scratch folder {self.scratch_root} of the local runtime is not a folder owned by "
                    f"this user: remove it"
                )
            temp_dir = self.scratch / "tmp"
            temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            what = "is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "cannot be created"
            raise AiProviderConfigError(
                f"scratch folder {self.scratch} of the local runtime {what} ({err.strerror or err}): "
                "free space there or set TMPDIR of the worker to another folder"
            ) from None
        return temp_dir

    def _read_result(self, path: Path, returncode: int) -> dict[str, Any]:
        if not path.exists():
            if self._last_error:
                message = (
                    f"runtime exited with code {returncode} without writing a result: {self._last_error}"
                )
                if returncode == EXIT_INPUT:
                    raise AiProviderConfigError(message)
                raise JobFailedError(message)
            raise JobFailedError(
                f"runtime exited with code {returncode} without writing a result: see the log above"
            )
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise JobFailedError(f"runtime wrote an unreadable result ({err}): see the log above") from None
