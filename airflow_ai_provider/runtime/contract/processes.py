"""The processes of a job: a subreaper runtime, stop signals with a deadline, ending what it started.

The runtime becomes the child subreaper, SIGTERM/SIGINT become an exception with a deadline, and
descendants or marked processes found in ``/proc`` are ended (SIGTERM, then SIGKILL).

Light on purpose (standard library only): the local runner of the control plane uses it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

from airflow_ai_provider.runtime.contract import MARKER_ENV

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: Seconds leftover processes get between SIGTERM and SIGKILL.
TERM_GRACE_S = 3.0
#: Rounds of "find, SIGKILL" after the grace, for processes forked while the others were ended.
KILL_ROUNDS = 5
_POLL_S = 0.05
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)``; ``False`` where it is unavailable."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux >= 3.4).

    A helper that double-forks or starts a new session (``setsid``, ``start_new_session=True``) then
    stays below this process instead of moving to init, so :func:`descendants` still finds it.
    """
    return prctl(PR_SET_CHILD_SUBREAPER, 1)


def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, state letter)`` of ``pid`` from ``/proc/<pid>/stat``, or ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and brackets
    return (int(fields[1]), fields[0]) if len(fields) > 1 else None


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended)."""
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z"


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def descendants(root: int) -> set[int]:
    """Live (not zombie) descendants of ``root``, found by walking ``/proc`` by parent pid."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[1] != "Z":
            children.setdefault(stat[0], []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def marked(marker: str) -> set[int]:
    """Live processes of this user whose environment holds ``MARKER_ENV=<marker>`` (from
    ``/proc/<pid>/environ``, the environment each one started with)."""
    entry = f"{MARKER_ENV}={marker}".encode()
    uid, me = os.getuid(), os.getpid()
    found: set[int] = set()
    for pid in _pids():
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        stat = _stat(pid)
        if entry in environ.split(b"\0") and stat is not None and stat[1] != "Z":
            found.add(pid)
    return found


def reap_children() -> None:
    """Collect the exit status of every ended child (a subreaper inherits zombies)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _send(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def end_processes(
    find: Callable[[], set[int]], grace: float = TERM_GRACE_S, reap: Callable[[], None] | None = None
) -> dict[int, str]:
    """SIGTERM every process ``find`` returns, SIGKILL what it still returns after ``grace`` seconds.

    ``find`` is asked again on every round, so a reused pid is never signalled and a process forked
    meanwhile is caught. Bounded: at most ``grace`` plus ``KILL_ROUNDS`` short rounds. Returns the
    signalled pids with their command lines (read before the signals, for a log line).
    """
    ended: dict[int, str] = {}

    def signal_new(pids: set[int], signum: int) -> None:
        ended.update({pid: command_line(pid) for pid in pids if pid not in ended})
        _send(pids, signum)

    pids = find()
    if not pids:
        return ended
    signal_new(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        left = find()
        if not left:
            return ended
        signal_new(left - ended.keys(), signal.SIGTERM)
        time.sleep(_POLL_S)
    for _ in range(KILL_ROUNDS):
        left = find()
        if not left:
            break
        signal_new(left, signal.SIGKILL)
        time.sleep(_POLL_S)
        if reap is not None:
            reap()
    return ended


def command_line(pid: int) -> str:
    """The command line of ``pid`` (at most 80 characters), or ``""`` once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return ""


def describe(ended: dict[int, str], limit: int = 5) -> str:
    """``pid (command line)`` of the first ``limit`` processes, for a log line."""
    shown = [f"{pid} ({command})" for pid, command in list(ended.items())[:limit]]
    return ", ".join(shown) + (f" and {len(ended) - limit} more" if len(ended) > limit else "")


class JobInterrupted(BaseException):
    """The runtime got SIGTERM or SIGINT: the task was killed or timed out.

    A ``BaseException`` (as ``KeyboardInterrupt``), so no ``except Exception`` in a job or in user code
    turns it into another error, while ``finally`` blocks still run. A killed process is
    infrastructure: the result is marked retryable.
    """

    retryable = True

    def __init__(self, signum: int) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"runtime stopped by {name} (the task was killed or timed out) before the job finished; "
            "a retry runs it again"
        )


class SignalGuard:
    """Turns the first SIGTERM or SIGINT into :class:`JobInterrupted` in the main thread, and bounds
    what follows.

    ``deadline`` seconds after that signal, ``on_deadline(signum)`` runs in a watcher thread and the
    process exits with ``128 + signum``, even when the main thread sits in a long C call: Python's
    C-level handler writes the signal number to a wake-up pipe at once, and the watcher reads it.
    After :meth:`disarm` (the job is over, its result being written) a signal only starts the
    deadline.
    """

    def __init__(self, deadline: float, on_deadline: Callable[[int], None]) -> None:
        self.deadline = deadline
        self.on_deadline = on_deadline
        self.signum: int | None = None
        self.armed = False

    def install(self) -> None:
        """Install the handlers; call from the main thread."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        self.armed = True
        threading.Thread(target=self._watch, args=(read_fd,), name="stop-deadline", daemon=True).start()

    def disarm(self) -> None:
        self.armed = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            return  # already stopping; the deadline bounds the rest
        self.signum = signum
        if self.armed:
            raise JobInterrupted(signum)

    def _watch(self, read_fd: int) -> None:
        while True:
            data = os.read(read_fd, 1)
            if not data:
                return
            if data[0] in STOP_SIGNALS:
                break
        time.sleep(self.deadline)
        with contextlib.suppress(BaseException):
            self.on_deadline(data[0])
        os._exit(128 + data[0])
