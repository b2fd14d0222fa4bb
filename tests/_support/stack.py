"""The main job: the template kit running as one system through the real Airflow scheduler.

Files landing in ``{DATA_ROOT}/landing/customers`` start ``churn_ingest`` by themselves; through
Assets follow validated data -> a retrained, gated and promoted model -> batch predictions.
Airflow runs as ``airflow standalone`` (api-server, scheduler with LocalExecutor, dag-processor,
triggerer; SQLite) with the templates as its DAG folder and local execution mode; MLflow is a local
``mlflow server``. The data root is a local folder, or (``data_root="s3"``) a bucket on a moto
server that the templates reach through an Airflow AWS connection.
Used by ``scripts/run_demo.py`` (prints a summary) and the end-to-end tests (assert on it).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests._support.servers import (
    AirflowServer,
    MlflowServer,
    S3Server,
    start_airflow,
    start_mlflow_server,
    start_s3_server,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = ("churn_ingest", "churn_retrain", "churn_batch_inference")
POOLS = {"ai_training": 1, "ai_inference": 2}
LANDING = "landing/customers"
AWS_CONN_ID = "aws_data"
LANDING_PAUSE_SECONDS = 6.0
"""How long a landed file stays half-written (or under its temporary name) before it is complete."""
WATCHER_ENV = {"AI_TEMPLATES_POLL_SECONDS": "2", "AI_TEMPLATES_SETTLE_SECONDS": "10"}
"""The landing watcher lists every 2 s, so it sees each half-written file unchanged over several
listings, and waits for 10 s without change (longer than :data:`LANDING_PAUSE_SECONDS`)."""


@dataclass
class Stack:
    """The running servers and where everything lives.

    :ivar data: the local data folder: the data root itself, or (S3 data root) a folder that must
        stay empty.
    :ivar data_root: ``AI_TEMPLATES_DATA_ROOT`` as the templates get it.
    :ivar s3: the moto server holding the data root, ``None`` for a local data root.
    """

    home: Path
    data: Path
    data_root: str
    mlflow: MlflowServer
    airflow: AirflowServer
    s3: S3Server | None = None

    def uri(self, *parts: str) -> str:
        """The ``file://`` or ``s3://`` URI of ``parts`` under the data root."""
        root = self.data_root if self.s3 else f"file://{self.data_root}"
        return "/".join([root.rstrip("/"), *parts])

    def storage_options(self) -> dict[str, str] | None:
        """What :func:`tests._support.churn_sample.write_customers` needs to write to the data root."""
        return self.s3.storage_options() if self.s3 else None

    def list_files(self, prefix: str) -> list[str]:
        """URIs of every file under the folder URI ``prefix`` (recursive), sorted; S3 through boto3
        (the empty ``folder/`` objects that S3 clients leave as folder markers are no files)."""
        if not prefix.startswith("s3://"):
            folder = Path(prefix.removeprefix("file://"))
            return sorted(f"file://{p}" for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        bucket, key = _split_s3(prefix)
        pages = self.s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/")
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return sorted(f"s3://{bucket}/{key}" for key in keys if not key.endswith("/"))  # no folder markers

    def read_bytes(self, uri: str) -> bytes:
        """The content of a file of the data root."""
        if uri.startswith("s3://"):
            bucket, key = _split_s3(uri)
            return self.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(uri.removeprefix("file://")).read_bytes()

    def stop(self) -> None:
        from airflow_ai_provider.execution.local import default_scratch_root
        from tests._support.warm_servers import stop_servers_under

        self.airflow.stop()
        # The tasks' warm runtime servers run in their own sessions, out of Airflow's process group.
        stop_servers_under(default_scratch_root())
        self.mlflow.stop()
        if self.s3:
            self.s3.stop()


@dataclass
class ChainReport:
    """What one batch of landed files (or one manual trigger) of the chain produced."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, str]] = field(default_factory=dict)
    landed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_sample_data(stack: Stack, *, rows: int, scoring_rows: int) -> None:
    """A labelled holdout and customers to score, in the data root (nothing lands: see
    :func:`land_customers`, which starts the chain)."""
    from tests._support.churn_sample import write_customers

    options = stack.storage_options()
    holdout = max(rows // 4, 2_000)
    write_customers(
        stack.uri("holdout/customers"), holdout, seed=12, with_label=True, storage_options=options
    )
    write_customers(stack.uri("scoring/customers"), scoring_rows, seed=13, n_files=2, storage_options=options)


def land_customers(stack: Stack, folder: str = LANDING, *, rows: int, seed: int, files: int = 2) -> list[str]:
    """Land new labelled customer files the way an upstream system writes them, not complete at once.

    On a local data root each file is written under its final name in two halves,
    :data:`LANDING_PAUSE_SECONDS` apart; on S3 (where an object appears only complete) each file is
    uploaded under a temporary name (``<name>._COPYING_``) and renamed (copied, then the temporary
    deleted) after the same pause. All files of the batch are completed together.

    :return: the landed files' URIs.
    """
    from tests._support.churn_sample import write_customers

    with tempfile.TemporaryDirectory() as scratch:
        paths = write_customers(scratch, rows, seed, n_files=files, with_label=True)
        payloads = {Path(path).name: Path(path).read_bytes() for path in paths}
    if stack.s3:
        bucket, prefix = _split_s3(stack.uri(folder))
        client = stack.s3.client()
        for name, data in payloads.items():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{name}._COPYING_", Body=data)
        time.sleep(LANDING_PAUSE_SECONDS)
        for name in payloads:
            source = {"Bucket": bucket, "Key": f"{prefix}/{name}._COPYING_"}
            client.copy_object(Bucket=bucket, Key=f"{prefix}/{name}", CopySource=source)
            client.delete_object(**source)
    else:
        target = Path(stack.uri(folder).removeprefix("file://"))
        target.mkdir(parents=True, exist_ok=True)
        handles = {name: (target / name).open("wb") for name in payloads}
        try:
            for name, data in payloads.items():
                handles[name].write(data[: len(data) // 2])
                handles[name].flush()
            time.sleep(LANDING_PAUSE_SECONDS)
            for name, data in payloads.items():
                handles[name].write(data[len(data) // 2 :])
        finally:
            for handle in handles.values():
                handle.close()
    return [stack.uri(folder, name) for name in payloads]


def start_stack(
    home: Path,
    *,
    data_root: str = "local",
    extra_env: dict[str, str] | None = None,
    dags: tuple[str, ...] = DAGS,
) -> Stack:
    """Start MLflow and Airflow for the templates, with pools and ``dags`` (by default the three
    chained churn DAGs) unpaused.

    :param data_root: ``"local"`` (``home/data``) or ``"s3"``: a moto server on 127.0.0.1 with a
        fresh bucket, the data root ``s3://<bucket>/churn`` and the Airflow AWS connection
        :data:`AWS_CONN_ID` (``AI_TEMPLATES_AWS_CONN_ID``) that the worker, the triggerer and the
        local runtimes use. MLflow keeps its artifacts locally either way.
    """
    if data_root not in ("local", "s3"):
        raise ValueError(f"data_root must be 'local' or 's3', got {data_root!r}")
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    s3 = start_s3_server(home / "moto") if data_root == "s3" else None
    try:
        mlflow = start_mlflow_server(home / "mlflow")
    except BaseException:
        if s3:
            s3.stop()
        raise
    root = str(data)
    env = {
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps({"conn_type": "mlflow", "host": mlflow.url}),
        "AIRFLOW__AI_PROVIDER__EXECUTION_MODE": "local",
        "AI_TEMPLATES_REVIEW_TIMEOUT_MIN": "0.25",
        "PYTHONPATH": str(REPO_ROOT),
        **WATCHER_ENV,
    }
    if s3:
        bucket = f"churn-{uuid.uuid4().hex[:12]}"
        s3.client().create_bucket(Bucket=bucket)
        root = f"s3://{bucket}/churn"
        env.update(_aws_connection_env(s3))
    env = {**env, "AI_TEMPLATES_DATA_ROOT": root, **(extra_env or {})}
    try:
        airflow = start_airflow(home / "airflow", REPO_ROOT / "dag_templates", extra_env=env)
    except BaseException:
        mlflow.stop()
        if s3:
            s3.stop()
        raise
    stack = Stack(home, data, root, mlflow, airflow, s3)
    try:
        for pool, slots in POOLS.items():
            airflow.api("POST", "/pools", {"name": pool, "slots": slots, "include_deferred": False})
        for dag_id in dags:
            _wait(lambda dag_id=dag_id: _exists(airflow, f"/dags/{dag_id}"), 180, f"DAG {dag_id} parsed")
            airflow.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    except BaseException:
        stack.stop()
        raise
    return stack


def _aws_connection_env(s3: S3Server) -> dict[str, str]:
    """The AWS connection to the moto server, as a deployment defines it, and its id for the templates.

    Airflow gets no AWS variables of its own: its tasks, its triggerer and the runtimes can reach
    the bucket only through the connection.
    """
    connection = {
        "conn_type": "aws",
        "login": s3.access_key,
        "password": s3.secret_key,
        "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
    }
    return {
        f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": json.dumps(connection),
        "AI_TEMPLATES_AWS_CONN_ID": AWS_CONN_ID,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_chain(
    stack: Stack, *, rows: int, seed: int = 11, manual: bool = False, timeout: float = 900
) -> ChainReport:
    """Land a batch of files and follow the chain it starts until it settles.

    By default the files land in the watched landing folder and nothing is triggered: the ingest
    run is the one the landing starts by itself. With ``manual`` they land in a folder of their own,
    which nothing watches, and ``churn_ingest`` is triggered through the REST API (as from the UI)
    with that folder as its ``landing`` param.
    """
    api = stack.airflow.api
    started = time.monotonic()
    report = ChainReport()
    since = {dag_id: _run_ids(stack.airflow, dag_id) for dag_id in DAGS}
    if manual:
        folder = f"landing/manual-{seed}"
        report.landed = land_customers(stack, folder, rows=rows, seed=seed)
        body = {"logical_date": None, "conf": {"landing": stack.uri(folder)}}
        ingest_id = api("POST", "/dags/churn_ingest/dagRuns", body)["dag_run_id"]
    else:
        report.landed = land_customers(stack, rows=rows, seed=seed)
        ingest_id = _wait(
            lambda: _new_run(stack.airflow, "churn_ingest", since["churn_ingest"], None),
            300,
            "an ingest run started by the landed files",
        )
    report.runs["churn_ingest"] = _wait_finished(stack.airflow, "churn_ingest", ingest_id, timeout)
    for dag_id in DAGS[1:]:
        upstream_ok = all(run["state"] == "success" for run in report.runs.values())
        promoted = (
            dag_id != "churn_batch_inference" or _task_state(stack.airflow, report, "promote") == "success"
        )
        if not (upstream_ok and promoted):
            break
        run_id = _wait(
            lambda d=dag_id: _new_run(stack.airflow, d, since[d], "asset_triggered"),
            120,
            f"a run of {dag_id}",
        )
        report.runs[dag_id] = _wait_finished(stack.airflow, dag_id, run_id, timeout)
    for dag_id, run in report.runs.items():
        instances = api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        report.tasks[dag_id] = {
            (ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"): ti["state"]
            for ti in instances
        }
    report.seconds = time.monotonic() - started
    return report


def run_ids(stack: Stack, dag_id: str) -> set[str]:
    """The ids of every run of ``dag_id`` so far."""
    return _run_ids(stack.airflow, dag_id)


def follow_new_run(
    stack: Stack, dag_id: str, known: set[str], run_type: str | None, timeout: float = 600
) -> dict[str, Any]:
    """Wait for a run of ``dag_id`` not in ``known`` (of ``run_type``; any but manual when ``None``)
    to start and finish; return it as the REST API describes it."""
    run_id = _wait(lambda: _new_run(stack.airflow, dag_id, known, run_type), 180, f"a new run of {dag_id}")
    return _wait_finished(stack.airflow, dag_id, run_id, timeout)


def xcom(stack: Stack, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """A task's returned value, through the REST API."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.airflow.api("GET", f"{path}?map_index={map_index}&deserialize=true")["value"]


def _split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key.rstrip("/")


def _task_state(airflow: AirflowServer, report: ChainReport, task_id: str) -> str | None:
    run = report.runs.get("churn_retrain")
    if not run:
        return None
    instances = airflow.api("GET", f"/dags/churn_retrain/dagRuns/{run['dag_run_id']}/taskInstances")
    return next((ti["state"] for ti in instances["task_instances"] if ti["task_id"] == task_id), None)


def _exists(airflow: AirflowServer, path: str) -> bool:
    try:
        airflow.api("GET", path)
    except Exception:
        return False
    return True


def _run_ids(airflow: AirflowServer, dag_id: str) -> set[str]:
    return {run["dag_run_id"] for run in airflow.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]}


def _new_run(airflow: AirflowServer, dag_id: str, known: set[str], run_type: str | None) -> str | None:
    """The first run of ``dag_id`` (of ``run_type``, any but manual when ``None``) not in ``known``."""
    runs = airflow.api("GET", f"/dags/{dag_id}/dagRuns?order_by=id")["dag_runs"]
    fresh = [
        run["dag_run_id"]
        for run in runs
        if run["dag_run_id"] not in known
        and (run["run_type"] == run_type if run_type else run["run_type"] != "manual")
    ]
    return fresh[0] if fresh else None


def _wait_finished(airflow: AirflowServer, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run if run["state"] in ("success", "failed") else None

    return _wait(finished, timeout, f"{dag_id} run {run_id} to finish")


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"waited {timeout:.0f} s for {what}")
