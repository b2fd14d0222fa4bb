"""Starting the warm runtime server in the background: the call returns before the server listens,
the starting server holds the start lock until it does, and a job started meanwhile waits for that
server instead of starting another. Real processes; every server a test starts is stopped."""

from __future__ import annotations

import fcntl
import logging
import sys
from pathlib import Path

import pytest

from airflow_ai_provider.execution import warm_runtime
from airflow_ai_provider.execution.local import prestart_warm_runtime
from tests._support.system import wait_for
from tests._support.warm_servers import servers_under, started_servers_under
from tests.conftest import REPO_ROOT
from tests.unit.execution.test_warm_runtime import BAD_SPEC, BAD_SPEC_ERROR, run_job, warm_root

__all__ = ["warm_root"]


def _lock_is_held(root: Path) -> bool:
    (lock,) = (root / warm_runtime.FOLDER).glob("*.lock")
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _started_server(root: Path) -> int:
    """The one server started under ``root``."""
    (server,) = started_servers_under(root)
    return server


def _first_server_only(tmp_path: Path, monkeypatch, *lines: str) -> None:
    """Servers started from here on run ``lines`` (Python, at interpreter start), the first one only."""
    site = tmp_path / "site"
    site.mkdir()
    body = "".join(f"        {line}\n" for line in lines)
    (site / "sitecustomize.py").write_text(
        "import os, sys, time\n"
        f"if {warm_runtime.SERVER_MODULE!r} in sys.orig_argv:\n"
        "    try:\n"
        f"        os.close(os.open({str(tmp_path / 'first')!r}, os.O_CREAT | os.O_EXCL))\n"
        "    except FileExistsError:\n"
        "        pass\n"
        "    else:\n" + body
    )
    monkeypatch.setenv("PYTHONPATH", f"{site}:{REPO_ROOT}")


@pytest.fixture
def slow_server_start(tmp_path, monkeypatch) -> None:
    """Servers (only they) take 3 s more to start: a prestarted one is still starting when the test looks."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys, time\nif {warm_runtime.SERVER_MODULE!r} in sys.orig_argv:\n    time.sleep(3)\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{site}:{REPO_ROOT}")


def test_a_prestarted_server_holds_the_start_lock_until_it_listens_and_takes_the_first_job(
    warm_root, slow_server_start
):
    assert prestart_warm_runtime(sys.executable, warm_root) is True
    server = _started_server(warm_root)
    assert not list((warm_root / warm_runtime.FOLDER).glob("*.sock"))  # returned before it listens
    assert _lock_is_held(warm_root)
    assert prestart_warm_runtime(sys.executable, warm_root) is False  # it is being started

    runner, result, log = run_job(BAD_SPEC, warm_root)

    assert isinstance(runner.process, warm_runtime.WarmJob)
    assert runner.process.server_pid == server
    assert result["status"] == "failed" and result["error"] == BAD_SPEC_ERROR
    assert not [r for r in log if r.levelno >= logging.WARNING]
    assert servers_under(warm_root) == [server]
    assert not _lock_is_held(warm_root)


def test_prestart_starts_nothing_when_the_server_listens(warm_root):
    runner, _, _ = run_job(BAD_SPEC, warm_root)
    assert isinstance(runner.process, warm_runtime.WarmJob)

    assert prestart_warm_runtime(sys.executable, warm_root) is False
    assert servers_under(warm_root) == [runner.process.server_pid]


def test_a_job_starts_its_own_server_when_a_prestarted_one_dies_while_starting(
    warm_root, tmp_path, monkeypatch
):
    _first_server_only(tmp_path, monkeypatch, "time.sleep(2)", "sys.exit('this server dies while starting')")
    assert prestart_warm_runtime(sys.executable, warm_root) is True
    doomed = _started_server(warm_root)

    runner, result, log = run_job(BAD_SPEC, warm_root)

    assert isinstance(runner.process, warm_runtime.WarmJob)
    assert runner.process.server_pid != doomed
    assert servers_under(warm_root) == [runner.process.server_pid]
    assert result["error"] == BAD_SPEC_ERROR
    assert not [r for r in log if r.levelno >= logging.WARNING]


def test_a_prestarted_server_that_hangs_while_starting_ends_itself_and_frees_the_start_lock(
    warm_root, tmp_path, monkeypatch
):
    _first_server_only(  # its preload hangs for good
        tmp_path,
        monkeypatch,
        "class HangOnYaml:",
        "    def find_spec(self, name, path=None, target=None):",
        "        if name == 'yaml':",
        "            time.sleep(600)",
        "sys.meta_path.insert(0, HangOnYaml())",
    )
    start_timeout = warm_runtime.START_TIMEOUT_S
    monkeypatch.setattr(warm_runtime, "START_TIMEOUT_S", 2.0)  # the server ends itself after 4 s
    assert prestart_warm_runtime(sys.executable, warm_root) is True
    hung = _started_server(warm_root)
    assert _lock_is_held(warm_root)

    wait_for(lambda: not _lock_is_held(warm_root), timeout=30, what="the hung server to end itself")
    assert not servers_under(warm_root)
    monkeypatch.setattr(warm_runtime, "START_TIMEOUT_S", start_timeout)  # the next server may take its time
    runner, result, log = run_job(BAD_SPEC, warm_root)

    assert isinstance(runner.process, warm_runtime.WarmJob)
    assert runner.process.server_pid != hung
    assert result["error"] == BAD_SPEC_ERROR
    assert not [r for r in log if r.levelno >= logging.WARNING]


def test_prestart_does_nothing_with_the_warm_runtime_off_or_for_a_wrapper_script(
    warm_root, tmp_path, monkeypatch
):
    wrapper = tmp_path / "wrapped-python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    assert prestart_warm_runtime(str(wrapper), warm_root) is False
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", "False")
    assert prestart_warm_runtime(sys.executable, warm_root) is False
    assert servers_under(warm_root) == []
