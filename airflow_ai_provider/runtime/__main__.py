"""Command line of the job runtime: ``python -m airflow_ai_provider.runtime <job> --spec-json '<json>'``.

The spec comes from ``--spec-json``, ``--spec-file`` or the ``AI_PROVIDER_JOB_SPEC`` environment
variable. The JSON result goes to ``--result-path``, ``$AI_PROVIDER_RESULT_PATH`` or
``/airflow/xcom/return.json`` (where the KubernetesPodOperator XCom sidecar reads it), on success and
on failure. Exit codes: 0 success, 2 bad input (:class:`JobInputError`), 3 unreachable service
(:class:`JobServiceError`), 128 + the signal number when stopped by SIGTERM or SIGINT, 1 anything
else. A failure ends with one stderr line ``airflow-ai-runtime error: <message>``.

Nothing outlives the job: the runtime is a child subreaper, and when the job ends (success, failure
or a signal) every process it left behind, whatever its session, gets SIGTERM and, after
:data:`~.processes.TERM_GRACE_S` seconds, SIGKILL. SIGTERM and SIGINT become
:class:`~.processes.JobInterrupted` so that the jobs' ``finally`` blocks remove their temporary files;
the result is then failed and retryable. :data:`STOP_DEADLINE_S` seconds after the signal the runtime
exits whatever it is doing. A full disk or quota is a one-line :class:`~.scratch.StorageFullError`.

The process ends with ``os._exit`` once the result is written (fsynced), the output flushed and the
job's threads joined: the interpreter's teardown with pandas, pyarrow, scikit-learn and MLflow loaded
takes up to 2 s and does nothing the job needs. ``AI_PROVIDER_RUNTIME_FULL_EXIT=1`` keeps the normal
shutdown, for tools that write their data from ``atexit`` handlers (coverage, profilers).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from airflow_ai_provider.runtime import job_metrics, scratch, spans
from airflow_ai_provider.runtime.contract import (
    DEFAULT_RESULT_PATH,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SERVICE,
    EXIT_UNEXPECTED,
    FULL_EXIT_ENV,
    RESULT_PATH_ENV,
    SPEC_ENV,
    STATUS_FAILED,
    STATUS_SUCCESS,
    processes,
)
from airflow_ai_provider.runtime.contract.errors import (
    JobError,
    JobInputError,
    JobServiceError,
    error_chain,
    one_line,
)
from airflow_ai_provider.runtime.contract.processes import JobInterrupted
from airflow_ai_provider.runtime.contract.spec import JOB_TYPES, JobResult, JobSpec

#: Seconds after SIGTERM/SIGINT by which the runtime has exited, below the local runner's 10 s grace
#: and Kubernetes' default 30 s termination grace period.
STOP_DEADLINE_S = 7.0
#: The module whose ``run(spec)`` runs each job type.
JOB_MODULES = {
    "infer": "airflow_ai_provider.runtime.infer",
    "train": "airflow_ai_provider.runtime.training.job",
    "validate": "airflow_ai_provider.runtime.validation.job",
    "evaluate": "airflow_ai_provider.runtime.evaluate",
    "drift": "airflow_ai_provider.runtime.drift",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_ai_provider.runtime", description=__doc__)
    parser.add_argument("job", help=f"job type ({', '.join(JOB_TYPES)}); must equal the spec's 'job'")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--spec-json", help="the job spec as JSON")
    source.add_argument("--spec-file", help="path of a file holding the job spec JSON")
    parser.add_argument(
        "--result-path",
        help=f"where to write the result JSON (default ${RESULT_PATH_ENV} or {DEFAULT_RESULT_PATH})",
    )
    return parser


def read_spec(args: argparse.Namespace) -> JobSpec:
    """The job spec from ``--spec-json``, ``--spec-file`` or ``$AI_PROVIDER_JOB_SPEC``."""
    if args.spec_json is not None:
        text = args.spec_json
    elif args.spec_file is not None:
        try:
            with open(args.spec_file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as err:
            raise JobInputError(f"cannot read spec file {args.spec_file}: {err.strerror or err}") from None
    elif os.environ.get(SPEC_ENV):
        text = os.environ[SPEC_ENV]
    else:
        raise JobInputError(f"no job spec: pass --spec-json, --spec-file or set {SPEC_ENV}")
    spec = JobSpec.from_json(text)
    if spec.job != args.job:
        raise JobInputError(f"job {args.job!r} was requested but the spec is for job {spec.job!r}")
    return spec


def job_runner(job: str) -> Callable[[JobSpec], JobResult]:
    """The function that runs ``job`` (imported lazily: each job pulls in its own libraries)."""
    if job not in JOB_TYPES:
        raise JobInputError(f"unknown job type {job!r}")
    module = importlib.import_module(JOB_MODULES[job])
    return module.run


def failed_result(job: str, err: BaseException, spec: JobSpec | None, started: float) -> JobResult:
    """A result for a failed job, with a one-line error."""
    known = isinstance(err, (JobError, JobInterrupted))
    message = one_line(err) if known else f"{type(err).__name__}: {one_line(err)}"
    result = JobResult(
        job=job,
        status=STATUS_FAILED,
        error=message,
        error_type=type(err).__name__,
        retryable=bool(getattr(err, "retryable", False)),
    )
    if spec is not None and spec.model is not None:
        result.model = {
            "name": spec.model.name,
            "version": str(spec.model.version),
            "alias": spec.model.alias,
        }
    if spec is not None:
        result.shard = {"index": spec.shard.index, "count": spec.shard.count}
        result.input_source = ",".join(spec.inputs)
    ended = time.time()
    result.timings = {"started_at": started, "ended_at": ended}
    result.metrics = {"duration_s": round(ended - started, 3)}
    return result


def write_json_atomic(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (:func:`~.scratch.write_atomic`)."""
    scratch.write_atomic(path, json.dumps(payload, sort_keys=True).encode())


def exit_code(err: BaseException) -> int:
    if isinstance(err, JobInterrupted):
        return 128 + err.signum
    if isinstance(err, JobInputError):
        return EXIT_INPUT
    if isinstance(err, JobServiceError):
        return EXIT_SERVICE
    return EXIT_UNEXPECTED


def as_storage_full(err: BaseException) -> BaseException:
    """``err`` as a :class:`~.scratch.StorageFullError` when a full disk or quota is behind it (a job
    that did not name the location itself: the file named by the error, else the scratch folder)."""
    if isinstance(err, scratch.StorageFullError):
        return err
    filename = next((e.filename for e in error_chain(err) if isinstance(e, OSError) and e.filename), None)
    where = f"{filename}" if filename else f"scratch folder {tempfile.gettempdir()} ($TMPDIR)"
    full = scratch.storage_full(err, where, "free space there or give the job a larger scratch folder")
    return full or err


class _ResultWriter:
    """Writes the result once, from the main thread or from the stop deadline, whichever comes first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.written = False

    def write(self, result: JobResult) -> None:
        with self.lock:
            if not self.written:
                self.written = True
                write_json_atomic(self.path, result.to_dict())


def end_leftover_processes(grace: float = processes.TERM_GRACE_S) -> None:
    """End every process the job left behind (children, and orphans this subreaper inherited)."""
    me = os.getpid()
    ended = processes.end_processes(lambda: processes.descendants(me), grace, processes.reap_children)
    if ended:
        print(
            f"ended {len(ended)} process(es) the job left running: {processes.describe(ended)}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None, *, standalone: bool = False) -> int:
    """Run one job from the command line; return the process exit code.

    :param standalone: this process exists for the job (``python -m``): handle SIGTERM/SIGINT, become
        a child subreaper and end every process left behind. Off when called inside another program.
    """
    started = time.time()
    args = _parser().parse_args(argv)
    result_path = args.result_path or os.environ.get(RESULT_PATH_ENV) or DEFAULT_RESULT_PATH
    writer = _ResultWriter(result_path)
    spec: JobSpec | None = None

    def stop_now(signum: int) -> None:  # the deadline passed: no more grace for anything
        end_leftover_processes(grace=0)
        with contextlib.suppress(Exception):
            writer.write(failed_result(args.job, JobInterrupted(signum), spec, started))
        print(f"airflow-ai-runtime error: {JobInterrupted(signum)}", file=sys.stderr, flush=True)

    guard = processes.SignalGuard(STOP_DEADLINE_S, stop_now)
    try:
        try:
            if standalone:
                guard.install()
                processes.become_subreaper()
            from airflow_ai_provider.runtime.tracking import set_process_defaults

            set_process_defaults()
            job_metrics.reset()
            spec = read_spec(args)
            result = job_runner(spec.job)(spec)
            # A job may report a failure as a result (a data check that failed) instead of raising.
            code = EXIT_OK if result.status == STATUS_SUCCESS else EXIT_INPUT
        finally:
            guard.disarm()  # from here on a signal only starts the stop deadline
    except (Exception, JobInterrupted) as caught:  # every failure becomes a result
        err = as_storage_full(caught)
        if not isinstance(err, (JobError, JobInterrupted)):
            traceback.print_exc()
        result = failed_result(args.job, err, spec, started)
        code = exit_code(err)
    if standalone:
        end_leftover_processes()
    try:
        writer.write(result)
    except OSError as err:
        full = scratch.storage_full(err, f"the result {result_path}", "free space there")
        print(
            f"airflow-ai-runtime error: {full or f'cannot write the result to {result_path}: {one_line(err)}'}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INPUT if full else code or EXIT_UNEXPECTED
    spans.export_job(spec, result, started)
    if code:
        print(f"airflow-ai-runtime error: {result.error}", file=sys.stderr, flush=True)
    else:
        print(
            f"job {result.job} succeeded in {result.metrics.get('duration_s', 0):.1f}s; result in {result_path}",
            flush=True,
        )
    return code


def run_standalone(argv: list[str] | None = None) -> NoReturn:
    """Run one job as this process's only work (``python -m``), then end the process at once.

    The job's own ``finally`` blocks and :func:`main` have removed its temporary files and written the
    result; what is left is the interpreter's teardown, skipped with ``os._exit`` unless
    ``$AI_PROVIDER_RUNTIME_FULL_EXIT`` is ``1`` (then ``atexit`` handlers and finalizers run as usual).
    """
    code = main(argv, standalone=True)
    if os.environ.get(FULL_EXIT_ENV, "").strip() == "1":
        sys.exit(code)
    fast_exit(code)


def fast_exit(code: int) -> NoReturn:
    """Flush stdout, stderr and the logging handlers, then end the process with ``code`` at once."""
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run_standalone()
