"""Real MLflow tracking server and moto S3 server as subprocesses, for tests and the local stack.

Both servers bind to ``127.0.0.1`` on a free port, run in their own session (``start_new_session``)
and are stopped by signalling the whole process group: ``mlflow server`` forks a uvicorn worker
(and, with job execution on, a job runner with ``huey_consumer`` children) that would outlive a
plain ``terminate()`` of the parent.

:func:`start_mlflow_server`, :func:`start_s3_server` and :func:`stop_server` are public so a test
can run an extra server of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"
MLFLOW_START_TIMEOUT = 90.0
S3_START_TIMEOUT = 30.0
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 40


class ServerStartError(RuntimeError):
    """A server subprocess exited or did not answer its health URL in time."""


@dataclass(kw_only=True)
class _Server:
    """A server subprocess running as the leader of its own process group."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pgid(self) -> int:
        """Process group id (equal to the leader's pid because of ``start_new_session``)."""
        return self.process.pid

    def alive_pids(self) -> list[int]:
        """Pids of the group's processes that are still running (zombies excluded)."""
        return _group_pids(self.pgid)

    def stop(self) -> None:
        """Stop the whole process group; see :func:`stop_server`."""
        _stop_process_group(self.process)


@dataclass(kw_only=True)
class MlflowServer(_Server):
    """A running ``mlflow server`` that proxies artifact uploads and downloads.

    :ivar url: tracking URI, ``http://127.0.0.1:PORT``.
    :ivar backend_uri: the server's ``sqlite:///`` backend store.
    :ivar artifacts_dir: local folder the server stores proxied artifacts in.
    """

    url: str
    backend_uri: str
    artifacts_dir: Path


@dataclass(kw_only=True)
class S3Server(_Server):
    """A running moto server emulating S3 with fake credentials.

    :ivar endpoint_url: ``http://127.0.0.1:PORT``.
    """

    endpoint_url: str
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY
    region: str = S3_REGION

    def client(self) -> Any:
        """Return a boto3 S3 client bound to this server.

        :return: ``botocore`` S3 client using path-style addressing.
        """
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def storage_options(self) -> dict[str, str]:
        """fsspec/pandas ``storage_options`` that write to this server
        (:func:`tests._support.churn_sample.write_customers`)."""
        return {
            "endpoint_url": self.endpoint_url,
            "key": self.access_key,
            "secret": self.secret_key,
            "region_name": self.region,
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs (and MLflow's S3 store) at this server.

        :return: a new dict; merge it into a subprocess environment.
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


# --------------------------------------------------------------------------- process helpers


def _free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1.

    :return: a port number that was free a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _group_pids(pgid: int) -> list[int]:
    """List the live (non-zombie) processes of a process group.

    :param pgid: process group id.
    :return: pids, empty when the group is gone.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group, ignoring a group that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Reap the leader and wait until no process of its group is left.

    :return: ``True`` when the group is gone within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        process.poll()
        if process.returncode is not None and not _group_pids(process.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _stop_process_group(process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop a ``start_new_session`` subprocess and all its descendants.

    Sends SIGTERM to the group, waits up to ``grace`` seconds, then sends SIGKILL.

    :param process: the group leader.
    :param grace: seconds to wait after SIGTERM.
    :raises RuntimeError: if processes survive SIGKILL.
    """
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(process, grace):
        return
    _signal_group(pgid, signal.SIGKILL)
    if not _wait_group_gone(process, 5.0):
        raise RuntimeError(f"process group {pgid} survived SIGKILL: pids {_group_pids(pgid)}")


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as the leader of a new session, output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file (empty if missing)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _http_ok(url: str) -> bool:
    """``True`` when a GET on ``url`` answers 200 (proxies bypassed)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(server: _Server, health_url: str, name: str, timeout: float) -> None:
    """Poll ``health_url`` until it answers; stop the server and raise if it never does.

    :raises ServerStartError: the process exited or ``timeout`` elapsed; includes the log tail.
    """
    deadline = time.monotonic() + timeout
    while not _http_ok(health_url):
        code = server.process.poll()
        if code is not None or time.monotonic() >= deadline:
            server.stop()
            reason = f"exited with code {code}" if code is not None else f"did not answer in {timeout:.0f}s"
            raise ServerStartError(
                f"{name} {reason} ({health_url}); log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        time.sleep(0.1)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment for a server subprocess: ours plus ``extra``, with unbuffered output."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


# --------------------------------------------------------------------------- public helpers


def start_mlflow_server(
    base_dir: Path,
    *,
    port: int | None = None,
    job_execution: bool = False,
    timeout: float = MLFLOW_START_TIMEOUT,
) -> MlflowServer:
    """Start ``mlflow server`` (uvicorn, one worker) on 127.0.0.1 and wait for ``/health``.

    :param base_dir: folder for the sqlite store, the artifacts and ``mlflow-server.log``.
    :param port: port to bind; a free one when ``None``.
    :param job_execution: start MLflow's job runner (``huey_consumer`` processes). Off by default:
        tests do not need it and it doubles the start-up time and writes a folder to /dev/shm.
    :param timeout: seconds to wait for ``/health``.
    :return: the running server.
    :raises ServerStartError: when it does not come up.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    artifacts_dir = base_dir / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)
    backend_uri = f"sqlite:///{base_dir / 'mlflow.db'}"
    cmd = [
        str(VENV_BIN / "mlflow"), "server",
        "--host", HOST,
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts",
        "--artifacts-destination", str(artifacts_dir),
    ]  # fmt: skip
    env = _child_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": str(job_execution).lower()})
    log_path = base_dir / "mlflow-server.log"
    server = MlflowServer(
        process=_spawn(cmd, log_path, env, base_dir),
        log_path=log_path,
        url=f"http://{HOST}:{port}",
        backend_uri=backend_uri,
        artifacts_dir=artifacts_dir,
    )
    _wait_ready(server, f"{server.url}/health", "mlflow server", timeout)
    return server


def start_s3_server(
    base_dir: Path, *, port: int | None = None, timeout: float = S3_START_TIMEOUT
) -> S3Server:
    """Start a moto server on 127.0.0.1 and wait until it answers.

    :param base_dir: folder for ``moto-server.log``.
    :param port: port to bind; a free one when ``None``.
    :param timeout: seconds to wait for the server.
    :return: the running server.
    :raises ServerStartError: when it does not come up.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    cmd = [str(VENV_BIN / "moto_server"), "-H", HOST, "-p", str(port)]
    log_path = base_dir / "moto-server.log"
    server = S3Server(
        process=_spawn(cmd, log_path, _child_env({}), base_dir),
        log_path=log_path,
        endpoint_url=f"http://{HOST}:{port}",
    )
    _wait_ready(server, f"{server.endpoint_url}/moto-api/data.json", "moto server", timeout)
    return server


def stop_server(server: _Server) -> None:
    """Stop a server started by this module: SIGTERM to its process group, then SIGKILL.

    :param server: a server from :func:`start_mlflow_server` or :func:`start_s3_server`.
    :raises RuntimeError: if a process of the group survives SIGKILL.
    """
    server.stop()


# --------------------------------------------------------------------------- Airflow


@dataclass(kw_only=True)
class AirflowServer(_Server):
    """``airflow standalone``: api-server, scheduler (LocalExecutor), dag-processor and triggerer.

    :ivar url: base URL of the API server.
    :ivar home: the ``AIRFLOW_HOME`` it runs with (SQLite metadata DB inside).
    """

    url: str
    home: Path

    def token(self) -> str:
        """A bearer token for the ``admin`` user of the simple auth manager."""
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        request = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": "admin", "password": passwords["admin"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        """Call the Airflow REST API (``/api/v2``) and return the decoded JSON answer."""
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token()}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")


def start_airflow(
    home: Path, dags_folder: Path, *, extra_env: dict[str, str] | None = None, timeout: float = 240.0
) -> AirflowServer:
    """Start ``airflow standalone`` on 127.0.0.1 with SQLite, LocalExecutor and small parallelism.

    :param home: ``AIRFLOW_HOME`` (created); the metadata DB and logs live there.
    :param dags_folder: the DAGs to serve (e.g. the templates).
    :param extra_env: more environment for Airflow and the tasks it runs.
    :param timeout: seconds to wait for the API's health endpoint.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = _child_env(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{HOST}:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{port}/execution/",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
    )
    log_path = home / "airflow-standalone.log"
    server = AirflowServer(
        process=_spawn([str(VENV_BIN / "airflow"), "standalone"], log_path, env, home),
        log_path=log_path,
        url=f"http://{HOST}:{port}",
        home=home,
    )
    _wait_ready(server, f"{server.url}/api/v2/monitor/health", "airflow standalone", timeout)
    return server
