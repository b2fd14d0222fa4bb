"""The server fixtures start real servers, reach them, and leave no process behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests._support.servers import (
    HOST,
    MlflowServer,
    S3Server,
    ServerStartError,
    _group_pids,
    start_mlflow_server,
    start_s3_server,
    stop_server,
)

HUEY_STORAGE_ENV = "_MLFLOW_HUEY_STORAGE_PATH"


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:]
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(_decode_address(address))
    return found


def _decode_address(hex_address: str) -> str:
    """Turn a /proc/net address (little-endian hex) into dotted or IPv6 text."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def test_mlflow_server_records_runs_and_proxies_artifacts(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    experiment_id = client.create_experiment(f"fixture-check-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "answer", 42.0)
    source = tmp_path / "hello.txt"
    source.write_text("through the server")
    client.log_artifact(run.info.run_id, str(source))
    client.set_terminated(run.info.run_id)

    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = list(mlflow_server.artifacts_dir.rglob("hello.txt"))
    assert [path.read_text() for path in stored] == ["through the server"]
    downloaded = client.download_artifacts(run.info.run_id, "hello.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "through the server"
    assert client.get_run(run.info.run_id).data.metrics == {"answer": 42.0}
    assert mlflow_server.backend_uri.startswith("sqlite:///")


def test_mlflow_server_registers_and_serves_a_model(mlflow_server: MlflowServer) -> None:
    import mlflow

    from tests._support.churn_sample import FEATURES, make_customers, mlflow_uris, train_and_register

    name = f"churn-fixture-{uuid.uuid4().hex[:8]}"
    result = train_and_register(mlflow_server.url, name, alias="champion", n_rows=2_000)
    with mlflow_uris(mlflow_server.url):
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")

    predictions = model.predict(make_customers(20, seed=1, with_label=False)[list(FEATURES)])
    assert result["version"] == 1
    assert len(predictions) == 20
    assert list(mlflow_server.artifacts_dir.rglob("model.pkl"))


def test_servers_bind_loopback_only(mlflow_server: MlflowServer, s3_server: S3Server) -> None:
    assert _listen_addresses(_port(mlflow_server.url)) == {HOST}
    assert _listen_addresses(_port(s3_server.endpoint_url)) == {HOST}


def test_s3_server_stores_and_returns_objects(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"payload")

    body = client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read()

    assert body == b"payload"
    assert s3_server.region == "us-east-1"


def test_s3_bucket_is_fresh_each_time(s3_server: S3Server, s3_bucket: str) -> None:
    listing = s3_server.client().list_objects_v2(Bucket=s3_bucket)
    assert listing["KeyCount"] == 0


def test_s3_env_lets_a_subprocess_reach_the_server(
    s3_server: S3Server, s3_bucket: str, s3_env: dict[str, str]
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="k", Body=b"from the parent")
    code = (
        "import sys, boto3; "
        "print(boto3.client('s3').get_object(Bucket=sys.argv[1], Key='k')['Body'].read().decode())"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}

    result = subprocess.run(
        [sys.executable, "-c", code, s3_bucket],
        env={**env, **s3_env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from the parent"
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_stop_server_ends_the_s3_process_group(tmp_path: Path) -> None:
    server = start_s3_server(tmp_path)
    assert server.alive_pids()

    stop_server(server)

    assert server.process.returncode is not None
    assert _group_pids(server.pgid) == []


def test_stop_server_ends_mlflow_and_its_job_runner(tmp_path: Path) -> None:
    server = start_mlflow_server(tmp_path, job_execution=True)
    try:
        # The job runner starts its huey consumers after the server answers: on a loaded machine that
        # takes a few seconds more, so wait for them (bounded) before stopping.
        deadline = time.monotonic() + 60
        while True:
            pids = server.alive_pids()
            commands = " ".join(_cmdline(pid) for pid in pids)
            if "huey_consumer" in commands or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        huey_dirs = {_environ(pid).get(HUEY_STORAGE_ENV) for pid in pids} - {None}
    finally:
        stop_server(server)
    for folder in huey_dirs:
        shutil.rmtree(folder, ignore_errors=True)

    assert "uvicorn" in commands
    assert "huey_consumer" in commands
    assert _group_pids(server.pgid) == []
    assert not [pid for pid in pids if _cmdline(pid)]


def test_start_failure_reports_the_log_tail(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(ServerStartError, match="(?s)moto server exited.*in use"):
            start_s3_server(tmp_path, port=port)
