"""The worker's side of the warm runtime: start a local job in the warm runtime server, starting it if needed.

:func:`start_job` sends ``python -m airflow_ai_provider.runtime <args>`` to the server of that
interpreter (:mod:`airflow_ai_provider.runtime.warm_server`), which forks the job, and returns a
:class:`WarmJob`, a handle like :class:`subprocess.Popen`. One server serves every job of an
interpreter, package build, import-time environment (:data:`IMPORT_TIME_ENV_PREFIXES`) and working
folder: its socket in the private folder ``root`` is named by their digest. The first job starts it
(an ``flock`` makes concurrent shards start exactly one) and waits at most :data:`START_TIMEOUT_S`
for it to listen. :func:`prestart` starts it in the background, before the first job needs it: the
server holds the start lock until it listens, so a job started meanwhile waits for that server.

When the server cannot take the job (it cannot start, it refuses, it answers out of protocol),
:class:`WarmRuntimeUnavailable` says why, before anything ran: the caller starts the job as a new
process instead. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import airflow_ai_provider
from airflow_ai_provider.runtime.contract import processes
from airflow_ai_provider.runtime.contract import warm_protocol as protocol

RUNTIME_MODULE = "airflow_ai_provider.runtime"
SERVER_MODULE = "airflow_ai_provider.runtime.warm_server"
#: The folder under the worker's scratch root that holds the servers' sockets, locks and logs.
FOLDER = "warm-runtime"
#: Seconds a job waits for a new server to preload and listen (a few seconds on a busy machine). A
#: server not listening after twice as long ends itself (a hung start), freeing the start lock.
START_TIMEOUT_S = 30.0
#: Seconds a connection, a request or the pid reply may take.
REPLY_TIMEOUT_S = 20.0
#: Variables read by the interpreter or a preloaded library when it starts or is imported (thread
#: counts, allocators, locale, import path): a job sees the server's values, so they name the server.
IMPORT_TIME_ENV_PREFIXES = (
    "PYTHON",
    "OMP_",
    "KMP_",
    "GOMP_",
    "OPENBLAS_",
    "GOTO_",
    "MKL_",
    "BLIS_",
    "NUMEXPR_",
    "ARROW_",
    "SKLEARN_",
    "MALLOC_",
    "LD_",
    "LANG",
    "LC_",
    "MLFLOW_CONFIGURE_LOGGING",
    "MLFLOW_LOGGING_LEVEL",
    "GX_",
)
#: Worker variables a server gets as they are (a job gets its whole environment from the request).
_SERVER_BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TMP", "TEMP")
_UNIX_PATH_MAX = 107
#: Servers this process started, polled so that none is left a zombie.
_started: list[subprocess.Popen] = []


class WarmRuntimeUnavailable(Exception):
    """The warm runtime cannot take this job (nothing of it ran): start it as a new process."""


def is_runtime_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is ``[python, "-m", "airflow_ai_provider.runtime", ...]``."""
    return len(argv) >= 3 and argv[1] == "-m" and argv[2] == RUNTIME_MODULE


def is_script(python: str) -> bool:
    """Whether the interpreter ``python`` is a script (``#!``): a wrapper that does its work for every
    job it starts, so a server started through it could not do that for the jobs it forks."""
    found = python if os.sep in python else shutil.which(python)
    try:
        with open(found or python, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that a preloaded library reads when it is imported."""
    return {name: value for name, value in env.items() if name.startswith(IMPORT_TIME_ENV_PREFIXES)}


def server_socket(python: str, env: Mapping[str, str], cwd: str, root: Path) -> Path:
    """The socket of the server for ``python``, this package build, the import-time part of ``env`` and
    the working folder ``cwd`` (first on ``sys.path`` under ``python -m``)."""
    package_dir = os.path.dirname(airflow_ai_provider.__file__)
    key = [
        python,
        cwd,
        airflow_ai_provider.__version__,
        protocol.files_fingerprint(protocol.package_files(package_dir)),
        sorted(import_time_env(env).items()),
    ]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return root / f"{digest}.sock"


def start_job(argv: Sequence[str], env: Mapping[str, str], *, root: Path, idle_seconds: int) -> WarmJob:
    """Start the runtime command ``argv`` in the warm runtime server, starting the server if needed.

    Standard input is ``/dev/null``; standard output and error go to one pipe, read from
    :attr:`WarmJob.stdout`. The job's working folder is this process's.

    :param argv: ``[python, "-m", "airflow_ai_provider.runtime", ...]``.
    :param env: the job's whole environment.
    :param root: the private folder of the servers' sockets (created 0700).
    :param idle_seconds: how long a server started here stays up without a job.
    :raises WarmRuntimeUnavailable: the server cannot take the job; nothing of it ran.
    """
    if not is_runtime_command(argv):
        raise WarmRuntimeUnavailable(f"{list(argv[:3])} is not a runtime command")
    path = _socket_for(argv[0], env, root)
    _reap_started()
    request = protocol.job_request(argv[3:], env, os.getcwd())
    stdin = os.open(os.devnull, os.O_RDONLY)
    read_fd, write_fd = os.pipe()
    try:
        for attempt in (1, 2):
            conn = _connect_or_start(path, argv[0], env, idle_seconds)
            reply = _send_request(conn, request, [stdin, write_fd, write_fd])
            problem = _unusable(reply)
            if problem:
                conn.close()
                if attempt == 1 and (reply is None or reply.get("refused") == protocol.REFUSED_STALE):
                    continue  # that server is on its way out (out of date, idle): start a new one
                raise WarmRuntimeUnavailable(f"the server {problem}")
            assert reply is not None
            stdout = open(read_fd, encoding=None, errors="replace")  # noqa: SIM115 - the reader owns it
            return WarmJob(conn, reply["pid"], int(reply.get("server_pid") or 0), stdout)
        raise AssertionError("unreachable")
    except BaseException:
        protocol.close_fds([read_fd])
        raise
    finally:
        protocol.close_fds([stdin, write_fd])  # the job has its own copies


def _send_request(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
    """Send the request; return the server's first reply, ``None`` when it closed without one (then no
    job was forked: a job forked without its pid sent dies with the server, or on this close)."""
    try:
        conn.settimeout(REPLY_TIMEOUT_S)
        protocol.send_message(conn, request, fds)
        reply, _ = protocol.recv_message(conn)
    except (OSError, protocol.WarmProtocolError):
        return None
    return reply


def _unusable(reply: dict[str, Any] | None) -> str:
    """Why the first reply does not start a job (``""`` when it does)."""
    if reply is None:
        return "closed the connection without an answer"
    if "refused" in reply:
        return f"refused the job: {reply['refused']}"
    if not isinstance(reply.get("pid"), int):
        return f"answered out of protocol: {reply}"
    return ""


def _connect(path: Path) -> socket.socket | None:
    """A connection to the server at ``path``; ``None`` when none listens there."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(REPLY_TIMEOUT_S)
    try:
        conn.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except OSError as err:
        conn.close()
        raise WarmRuntimeUnavailable(f"cannot connect to {path}: {err}") from None
    return conn


def prestart(python: str, env: Mapping[str, str], *, root: Path, idle_seconds: int) -> bool:
    """Start the server that a job with interpreter ``python`` and environment ``env`` will use, in the
    background: return at once, without waiting for its preload. Nothing happens when one listens or
    another process is starting it. Return whether a server was started.

    :param python: the jobs' interpreter.
    :param env: the jobs' whole environment (its import-time part names the server).
    :param root: the private folder of the servers' sockets (created 0700).
    :param idle_seconds: how long the server stays up without a job.
    :raises WarmRuntimeUnavailable: the server cannot be started here.
    """
    path = _socket_for(python, env, root)
    found: socket.socket | subprocess.Popen | None = _connect(path)
    if found is None:
        with _start_lock(path.with_suffix(".lock"), background=True) as start_lock:
            if start_lock is None:
                return False  # a job or another prestart is starting it
            found = _connect_or_spawn(path, python, env, idle_seconds, start_lock)
    if isinstance(found, subprocess.Popen):
        return True
    found.close()
    return False


def _socket_for(python: str, env: Mapping[str, str], root: Path) -> Path:
    """The socket of the server for ``python``, ``env`` and this working folder, in the private ``root``."""
    try:
        protocol.private_folder(root)
    except (OSError, protocol.WarmProtocolError) as err:
        raise WarmRuntimeUnavailable(f"folder {root} of the warm runtime cannot be used: {err}") from None
    path = server_socket(python, env, os.getcwd(), root)
    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise WarmRuntimeUnavailable(f"socket path {path} is too long for a Unix socket")
    return path


def _connect_or_start(path: Path, python: str, env: Mapping[str, str], idle_seconds: int) -> socket.socket:
    conn = _connect(path)
    if conn is not None:
        return conn
    with _start_lock(path.with_suffix(".lock")) as start_lock:
        assert start_lock is not None
        server = _connect_or_spawn(path, python, env, idle_seconds, start_lock)
        if isinstance(server, socket.socket):
            return server  # another shard (or a prestart) started it meanwhile
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            conn = _connect(path)
            if conn is not None:
                return conn
            if server.poll() is not None:
                raise WarmRuntimeUnavailable(
                    f"the server exited with code {server.returncode} while starting: "
                    f"{_last_line(path.with_suffix('.log'))}"
                )
            if time.monotonic() > deadline:
                raise WarmRuntimeUnavailable(
                    f"the server did not listen within {START_TIMEOUT_S:g} s (see {path.with_suffix('.log')})"
                )
            time.sleep(0.05)


def _connect_or_spawn(
    path: Path, python: str, env: Mapping[str, str], idle_seconds: int, start_lock: int
) -> socket.socket | subprocess.Popen:
    """Under the start lock: a connection to the server listening at ``path``, else a new server."""
    conn = _connect(path)
    if conn is not None:
        return conn
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket that refuses connections: its server is gone
    return _start_server(path, python, env, idle_seconds, start_lock=start_lock)


@contextlib.contextmanager
def _start_lock(lock_path: Path, *, background: bool = False) -> Iterator[int | None]:
    """Hold the start lock of one server and yield its fd (bounded: a starter holds it at most
    :data:`START_TIMEOUT_S`, a starting server until it listens).

    :param background: do not wait (yield ``None`` when another process holds the lock), and leave
        the lock to the server started under it: closing this fd keeps the server's copy locked.
    """
    with open(lock_path, "a") as handle:
        deadline = time.monotonic() + START_TIMEOUT_S + 10
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                busy = err.errno in (errno.EAGAIN, errno.EACCES)
                if busy and background:
                    yield None
                    return
                if not busy or time.monotonic() > deadline:
                    raise WarmRuntimeUnavailable(f"cannot take the start lock {lock_path}: {err}") from None
                time.sleep(0.05)
        try:
            yield handle.fileno()
        finally:
            if not background:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _start_server(
    path: Path, python: str, env: Mapping[str, str], idle_seconds: int, *, start_lock: int
) -> subprocess.Popen:
    """Start a server in its own session, its output in ``<socket>.log``; it gets a copy of the start
    lock's fd ``start_lock`` and holds the lock until it listens, or ends itself after twice
    :data:`START_TIMEOUT_S` without listening."""
    server_env = {name: os.environ[name] for name in _SERVER_BASE_ENV if name in os.environ}
    server_env.update(import_time_env(env))
    command = [python, "-m", SERVER_MODULE, "--socket", str(path), "--idle-seconds", str(idle_seconds)]
    command += ["--start-lock-fd", str(start_lock), "--start-limit-seconds", str(round(2 * START_TIMEOUT_S))]
    with open(path.with_suffix(".log"), "w") as log:
        try:
            server = subprocess.Popen(
                command,
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(start_lock,),
            )
        except OSError as err:
            raise WarmRuntimeUnavailable(f"cannot start {python}: {err}") from None
    _started.append(server)
    return server


def _reap_started() -> None:
    _started[:] = [server for server in _started if server.poll() is None]


def _last_line(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1][:300]
    return f"nothing in {log_path}"


class WarmJob:
    """A job forked by the warm runtime server, used as a :class:`subprocess.Popen` is.

    ``pid`` is the job's pid and process group (it called ``setsid``); ``server_pid`` the server's.
    ``returncode`` and ``rusage`` (``ru_utime``, ``ru_stime``, ``ru_maxrss`` and more, as the server
    reaped it) are set once it exited. The connection to the server stays open until then: if this
    process dies, the server kills the job.
    """

    def __init__(self, conn: socket.socket, pid: int, server_pid: int, stdout: IO[str]) -> None:
        self.pid = pid
        self.server_pid = server_pid
        self.stdout = stdout
        self.returncode: int | None = None
        self.rusage: Any = None
        self._done = threading.Event()
        self._conn = conn
        threading.Thread(target=self._watch, name=f"warm-job-{pid}", daemon=True).start()

    def poll(self) -> int | None:
        """The exit code once the job exited, else ``None``."""
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the job exited; return its exit code.

        :raises subprocess.TimeoutExpired: it still runs after ``timeout`` seconds.
        """
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired([RUNTIME_MODULE, str(self.pid)], timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def _watch(self) -> None:
        """Read the exit reply; without one the server died, and the job with it (``PR_SET_PDEATHSIG``)."""
        code, usage = -signal.SIGKILL, None
        try:
            gone_since: float | None = None
            while not select.select([self._conn], [], [], 1.0)[0]:
                # A server that stopped answering (stopped, hung) must not keep the task waiting
                # for ever: once the job is gone, its exit reply gets REPLY_TIMEOUT_S to arrive.
                if gone_since is None and not processes.running(self.pid):
                    gone_since = time.monotonic()
                if gone_since is not None and time.monotonic() - gone_since > REPLY_TIMEOUT_S:
                    raise protocol.WarmProtocolError(f"no exit reply for job {self.pid}")
            self._conn.settimeout(REPLY_TIMEOUT_S)
            reply, _ = protocol.recv_message(self._conn)
            code = int(reply["exit_code"])
            usage = SimpleNamespace(**{name: reply["rusage"].get(name, 0) for name in protocol.RUSAGE_FIELDS})
        except (OSError, ValueError, KeyError, TypeError, AttributeError, protocol.WarmProtocolError):
            _wait_gone(self.pid)
        finally:
            self._conn.close()
            self.returncode, self.rusage = code, usage
            self._done.set()


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` seconds) until ``pid`` no longer runs."""
    deadline = time.monotonic() + timeout
    while processes.running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
