"""Find and stop the warm runtime servers under a scratch root.

A server runs in its own session (it outlives the task that started it), so stopping a test's
process groups does not reach it: the fixtures that let jobs start servers stop them with
:func:`stop_servers_under`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from airflow_ai_provider.execution import warm_runtime
from tests._support.system import wait_for, with_marker


def servers_under(root: Path) -> list[int]:
    """Live warm runtime servers whose socket is under ``root``."""
    found = []
    for pid in with_marker(warm_runtime.SERVER_MODULE):
        with contextlib.suppress(OSError):
            if str(root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def started_servers_under(root: Path, timeout: float = 10.0) -> list[int]:
    """:func:`servers_under`, waiting up to ``timeout`` for one: the kernel sets a new process's
    command line while its program starts, after ``Popen`` has returned."""
    deadline = time.monotonic() + timeout
    while not servers_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return servers_under(root)


def stop_servers_under(root: Path, timeout: float = 15.0) -> None:
    """SIGTERM the process group of every server under ``root``; SIGKILL what is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in servers_under(root):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), sig)
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: not servers_under(root), timeout=timeout, what="the warm runtime servers to stop"
            )
