"""Find and stop the warm runtime servers under a scratch root.

A server runs in its own session (it outlives the task that started it), so stopping a test's
process groups does not reach it: the fixtures that let jobs start servers stop them with
:func:`stop_servers_under`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from airflow_ai_provider.execution import warm_runtime
from tests._support.system import wait_for


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def servers_under(root: Path) -> list[int]:
    """Live warm runtime servers whose socket is under ``root``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            ours = warm_runtime.SERVER_MODULE.encode() in cmdline and str(root).encode() in cmdline
            if ours and alive(int(name)):
                found.append(int(name))
    return found


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
