"""The warm runtime's server: one process that imported the heavy libraries once forks one job per request.

``python -m airflow_ai_provider.runtime.warm_server --socket PATH --idle-seconds N --start-lock-fd FD
--start-limit-seconds L`` preloads numpy, pyarrow, pandas, scikit-learn, MLflow, Great Expectations
and the runtime's job modules (none of them starts a thread when imported: a server whose preload
did refuses to fork), then listens on the Unix socket ``PATH`` (mode 0600 in a 0700 folder) and
closes ``FD``, its copy of the start lock its starter took: until then a client waits for this
server instead of starting another. A server that is not listening ``L`` seconds after it started
(a hung import) is killed by its ``SIGALRM``, and the start lock is free again. Each request
(:mod:`~.contract.warm_protocol`) becomes a forked child that turns into ``python -m
airflow_ai_provider.runtime <argv>`` (:mod:`.warm_job`): its own session and process group, the
request's environment, working folder and standard fds. The server replies with the
child's pid, reaps it on SIGCHLD and replies with its exit code and resource usage.

A single-threaded poll loop, so no Python thread is running when it forks. When a client's connection
closes before its job exited (the worker died), the job's process group gets SIGKILL; each job also
dies with the server (``PR_SET_PDEATHSIG``). The server exits, removing its socket, after
``idle_seconds`` without a job or a connection; on SIGTERM (its jobs get SIGTERM, then SIGKILL after
:data:`STOP_GRACE_S`); and once its jobs ended when a file it imported changed (a package upgrade):
such a request is refused with :data:`~.warm_protocol.REFUSED_STALE` and the client starts a new server.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from airflow_ai_provider.runtime import warm_job
from airflow_ai_provider.runtime.contract import warm_protocol as protocol

#: Libraries imported once by the server, before any job forks; each is skipped if it is missing.
PRELOADS = (
    "numpy",
    "pyarrow",
    "pyarrow.parquet",
    "pandas",
    "sklearn.ensemble",
    "yaml",
    "cloudpickle",
    "skops.io",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    "great_expectations",
    "airflow_ai_provider.runtime.__main__",
    "airflow_ai_provider.runtime.tracking",
    "airflow_ai_provider.runtime.models.loading",
)
#: Seconds the jobs get between the server's SIGTERM and SIGKILL (the runtime stops within 7 s).
STOP_GRACE_S = 10.0
#: Seconds a client may take to send its request, and a reply may take to go out.
REQUEST_TIMEOUT_S = 10.0
#: Signals whose handlers a job gets back as a fresh interpreter has them.
JOB_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP, signal.SIGPIPE)


def log(message: str) -> None:
    """One line of the server's log (its standard error)."""
    print(f"warm runtime server {os.getpid()}: {message}", file=sys.stderr, flush=True)


def preload() -> list[str]:
    """Import :data:`PRELOADS` and the runtime's job modules; return the files of every module imported."""
    for name in PRELOADS:
        _try_import(name)
    from airflow_ai_provider.runtime.__main__ import JOB_MODULES

    for name in JOB_MODULES.values():
        _try_import(name)
    return imported_files()


def _try_import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as err:
        log(f"not preloaded: {name} ({err})")


def imported_files() -> list[str]:
    """The files of the modules imported so far."""
    files = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    return sorted({file for file in files if isinstance(file, str)})


class WarmServer:
    """The poll loop: accepts requests, forks jobs, reaps them and replies.

    :param socket_path: where to listen.
    :param idle_seconds: exit after this long without a running job or a new connection.
    :param module_files: the files the server imported; a request finds them unchanged or is refused.
    :param start_lock_fd: the server's copy of its start lock, closed once it listens.
    """

    def __init__(
        self,
        socket_path: Path,
        idle_seconds: float,
        module_files: list[str],
        start_lock_fd: int | None = None,
    ) -> None:
        self.path = socket_path
        self.start_lock_fd = start_lock_fd
        self.idle_seconds = idle_seconds
        self.module_files = module_files
        self.fingerprint = protocol.files_fingerprint(module_files)
        #: Running jobs by pid, with their client's connection (``None`` once it closed).
        self.jobs: dict[int, socket.socket | None] = {}
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.inode = 0
        self.last_activity = time.monotonic()
        self.draining = False  # no new jobs: exit once the running ones ended
        self.kill_at: float | None = None  # after SIGTERM: when the jobs left get SIGKILL
        self.fresh_handlers = {signum: signal.getsignal(signum) for signum in JOB_SIGNALS}
        self.wake_read, self.wake_write = os.pipe()

    def serve(self) -> int:
        """Listen and run the loop until the server is done; return the exit code."""
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)  # the wakeup fd carries the signal to the loop
        self.selector.register(self.wake_read, selectors.EVENT_READ, "signals")
        try:
            self._listen()
            signal.alarm(0)  # started in time
            if self.start_lock_fd is not None:
                os.close(self.start_lock_fd)  # clients waiting for the start lock now find it listening
                self.start_lock_fd = None
            log(f"listening on {self.path} ({len(self.module_files)} module files preloaded)")
            while not (self.draining and not self.jobs):
                timeout = self._timeout()
                if timeout is not None and timeout <= 0 and not self.jobs:
                    if not self.draining:
                        log(f"idle for {self.idle_seconds:g} s: exiting")
                    return 0
                for key, _ in self.selector.select(timeout):
                    if key.data == "listener":
                        self._accept()
                    elif key.data == "signals":
                        self._signals()
                    else:
                        self._client_readable(key.data)
                self._reap()
                if self.kill_at is not None and time.monotonic() >= self.kill_at:
                    for pid in self.jobs:
                        _kill_group(pid, signal.SIGKILL)
            return 0
        finally:
            self._stop_listening()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self.kill_at is not None:
            return max(0.05, min(self.kill_at - now, 0.5))
        if self.jobs:
            return None
        return self.last_activity + self.idle_seconds - now

    def _listen(self) -> None:
        """Bind a temporary name, then rename it onto the socket path: a client finds a listening socket."""
        protocol.private_folder(self.path.parent)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(temporary))
        os.chmod(temporary, 0o600)
        listener.listen(64)
        os.rename(temporary, self.path)
        self.inode = os.stat(self.path).st_ino
        listener.setblocking(False)
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, "listener")

    def _stop_listening(self) -> None:
        """Close the listening socket and remove its file (unless a newer server's socket replaced it)."""
        if self.listener is None:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()

    def _signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            received = os.read(self.wake_read, 512)
            if any(signum in received for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
                self._terminate()

    def _terminate(self) -> None:
        if self.kill_at is not None:
            return
        log(f"stopping: {len(self.jobs)} job(s) get SIGTERM")
        self.draining = True
        self._stop_listening()
        self.kill_at = time.monotonic() + STOP_GRACE_S
        for pid in self.jobs:
            _kill_group(pid, signal.SIGTERM)

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        self.last_activity = time.monotonic()
        conn.setblocking(True)
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            request, fds = protocol.recv_message(conn, max_fds=3)
        except (protocol.WarmProtocolError, OSError) as err:
            log(f"unreadable request: {err}")
            conn.close()
            return
        try:
            refusal = self._refusal(request, fds)
            if refusal:
                with contextlib.suppress(OSError):
                    protocol.send_message(conn, {"refused": refusal})
                conn.close()
                return
            try:
                pid = self._fork(request, fds, conn)
            except OSError as err:  # no memory or process slots left for a fork
                log(f"cannot fork a job: {err}")
                with contextlib.suppress(OSError):
                    protocol.send_message(conn, {"refused": f"the server cannot fork: {err}"})
                conn.close()
                return
        finally:
            protocol.close_fds(fds)  # the job has its copies; the reader's end of stdout must see EOF
        self.jobs[pid] = conn
        try:
            protocol.send_message(conn, {"pid": pid, "server_pid": os.getpid()})
        except OSError:
            self._client_gone(pid)
            return
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _refusal(self, request: dict[str, Any], fds: list[int]) -> str:
        """Why this server does not take ``request`` (``""`` when it does)."""
        problem = protocol.check_request(request)
        if problem or len(fds) != 3:
            log(f"refused a request: {problem or f'{len(fds)} fds instead of 3'}")
            return problem or "a request carries 3 fds: stdin, stdout and stderr"
        if self.draining:
            return protocol.REFUSED_STALE
        if protocol.files_fingerprint(self.module_files) != self.fingerprint:
            log("files it imported changed (a package upgrade): exiting once its jobs end")
        elif threading.active_count() != 1:
            log(f"{threading.active_count()} threads are running: cannot fork safely, exiting")
        else:
            return ""
        self.draining = True
        self._stop_listening()
        return protocol.REFUSED_STALE

    def _fork(self, request: dict[str, Any], fds: list[int], conn: socket.socket) -> int:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid:
            return pid
        try:  # the child: it never returns from here
            for fd in self._server_fds(conn):
                with contextlib.suppress(OSError):
                    os.close(fd)
            warm_job.become_job(request, fds, self.fresh_handlers, server_pid=os.getppid())
        except BaseException:  # nothing may return into the server's loop
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
        os._exit(1)

    def _server_fds(self, conn: socket.socket) -> list[int]:
        """The fds of the server that a job must not keep: sockets, the wakeup pipe, the selector."""
        fds = [conn.fileno(), self.wake_read, self.wake_write, self.selector.fileno()]  # type: ignore[attr-defined]
        if self.listener is not None:
            fds.append(self.listener.fileno())
        fds += [client.fileno() for client in self.jobs.values() if client is not None]
        return fds

    def _client_readable(self, pid: int) -> None:
        """A job's connection is readable: its end closed (the worker died) unless it sent stray bytes."""
        conn = self.jobs.get(pid)
        if conn is None:
            return
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log(f"the client of job {pid} went away before the job ended: killing its process group")
            self._client_gone(pid)

    def _client_gone(self, pid: int) -> None:
        _kill_group(pid, signal.SIGKILL)
        conn = self.jobs.get(pid)
        if conn is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            conn.close()
            self.jobs[pid] = None

    def _reap(self) -> None:
        """Collect every job that ended and send its exit reply."""
        for pid in list(self.jobs):
            try:
                reaped, status, rusage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, status, rusage = pid, None, None
            if not reaped:
                continue
            conn = self.jobs.pop(pid)
            self.last_activity = time.monotonic()
            with contextlib.suppress(ProcessLookupError, PermissionError):  # never the pid alone: reaped,
                os.killpg(pid, signal.SIGKILL)  # it may be reused; what the job left in its group
            if conn is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            try:
                conn.setblocking(True)
                conn.settimeout(REQUEST_TIMEOUT_S)
                code = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
                protocol.send_message(conn, protocol.rusage_reply(code, rusage or _NO_USAGE))
            except (OSError, ValueError):
                pass
            finally:
                conn.close()


class _NoUsage:
    """Zero usage, for a job whose status was collected elsewhere."""

    def __getattr__(self, name: str) -> float:
        return 0.0


_NO_USAGE = _NoUsage()


def _kill_group(pid: int, signum: int) -> None:
    """Signal the job's process group (its pid: it called ``setsid``), or the job if it has none yet."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def main(argv: list[str] | None = None) -> int:
    """Preload, then serve until idle, stopped or out of date; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m airflow_ai_provider.runtime.warm_server")
    parser.add_argument("--socket", required=True, help="path of the Unix socket to listen on")
    parser.add_argument("--idle-seconds", type=float, default=600.0, help="exit after this long idle")
    parser.add_argument("--start-lock-fd", type=int, help="the start lock's fd, held until listening")
    parser.add_argument("--start-limit-seconds", type=int, default=0, help="die unless listening by then")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.start_limit_seconds > 0:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # its default action ends the process, even in C code
        signal.alarm(args.start_limit_seconds)
    files = preload()
    if threading.active_count() != 1:
        log(f"preloading started {threading.active_count() - 1} thread(s): cannot fork jobs safely")
        return 1
    log(f"preloaded in {time.monotonic() - started:.1f} s")
    return WarmServer(Path(args.socket), args.idle_seconds, files, args.start_lock_fd).serve()


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)  # the teardown of the preloaded libraries does nothing anyone needs
