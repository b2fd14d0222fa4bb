"""A child forked by the warm runtime server turning into ``python -m airflow_ai_provider.runtime <argv>``.

What a fresh interpreter would have and a fork of the server does not, the child sets itself: its own
session and process group, death with the server, the request's standard fds, environment, working
folder and ``sys.argv``, the signal handlers of a fresh interpreter, new standard streams (buffered
as ``$PYTHONUNBUFFERED`` of the job says), the job's ``$TMPDIR`` and ``$TZ``, and new random seeds.
Then it runs :func:`~airflow_ai_provider.runtime.__main__.run_standalone`.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from airflow_ai_provider.runtime.contract import processes
from airflow_ai_provider.runtime.contract import warm_protocol as protocol


def become_job(
    request: Mapping[str, Any], fds: list[int], handlers: Mapping[int, Any], *, server_pid: int
) -> NoReturn:
    """Turn this forked child into the job of ``request``; never returns.

    :param fds: the job's stdin, stdout and stderr, as received with the request.
    :param handlers: the signal handlers the server started with (a fresh interpreter's).
    :param server_pid: the server's pid: if it is already gone, the job does not start.
    """
    os.setsid()
    processes.prctl(processes.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server_pid:  # the server died before the line above took effect
        os._exit(1)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    protocol.close_fds(fd for fd in fds if fd > 2)
    signal.set_wakeup_fd(-1)
    for signum, handler in handlers.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    env: Mapping[str, str] = request["env"]
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    tempfile.tempdir = None  # tempfile caches the folder it found: the job's $TMPDIR must win
    _reseed()
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as ``python -m`` puts the working folder first
    _new_standard_streams(bool(env.get("PYTHONUNBUFFERED")))
    from airflow_ai_provider.runtime import __main__ as runtime_main

    argv = list(request["argv"])
    sys.argv = [runtime_main.__file__, *argv]
    _run(runtime_main.run_standalone, argv)


def _run(run_standalone: Callable[[list[str]], NoReturn], argv: list[str]) -> NoReturn:
    """Run the job; a ``sys.exit`` (``$AI_PROVIDER_RUNTIME_FULL_EXIT``) runs the ``atexit`` handlers."""
    try:
        run_standalone(argv)
    except SystemExit as done:
        import atexit

        atexit._run_exitfuncs()
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        _flush()
        os._exit(code)
    except BaseException:  # the job must end here, whatever happened
        import traceback

        traceback.print_exc()
        _flush()
    os._exit(1)


def _reseed() -> None:
    """New seeds for the global random generators (``random`` reseeds itself at fork; numpy does not)."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _new_standard_streams(unbuffered: bool) -> None:
    """New ``sys.stdin``/``stdout``/``stderr`` on fds 0-2, buffered as a fresh interpreter buffers them."""
    encoding, errors = sys.stdout.encoding, sys.stdout.errors

    def writer(fd: int, stream_errors: str, line_buffering: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "w", closefd=False)
        binary: Any = raw if unbuffered else io.BufferedWriter(raw)
        return io.TextIOWrapper(
            binary,
            encoding=encoding,
            errors=stream_errors,
            line_buffering=line_buffering,
            write_through=unbuffered,
        )

    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding, errors=errors
    )
    sys.stdout = sys.__stdout__ = writer(1, errors, line_buffering=False)
    sys.stderr = sys.__stderr__ = writer(2, "backslashreplace", line_buffering=True)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to tell
            stream.flush()
