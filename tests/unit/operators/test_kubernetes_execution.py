"""The kubernetes execution flow of an AI operator, driven through KubernetesPodOperator's own code.

No real Kubernetes API server runs here (none can on this machine). Instead a small fake API server
on 127.0.0.1 answers the few core/v1 endpoints KPO calls through the official Kubernetes client
(list/create/read/patch/delete pods, pod logs, events) and plays a kubelet that moves the pod to a
given final state. Reading the XCom needs an exec websocket into the sidecar, which the fake does not
speak: ``PodManager.extract_xcom`` is replaced by a read of the result file the fake "pod" wrote.
Everything else — the operator, KPO, PodManager, the Kubernetes client, the pod manifest sent over
HTTP, MLflow (a SQLite store) — is real.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager
from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider.exceptions import JobFailedError
from airflow_ai_provider.operators.data_validation import DataValidationOperator

IMAGE = "registry.local/churn-runtime:1.0"
RUN_ID = "manual__2025-03-01T06:00:00+00:00"
EMPTY_XCOM = "__airflow_xcom_result_empty__"
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+))?(?P<log>/log)?$")
_EVENTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")


def _container_status(name: str, image: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0, "state": state}


def _final_status(outcome: str, image: str) -> dict[str, Any]:
    """The status the fake kubelet gives a pod once created."""
    sidecar = _container_status("airflow-xcom-sidecar", "alpine", {"running": {}})
    scheduled = [{"type": "PodScheduled", "status": "True"}]
    if outcome == "image-pull-backoff":
        waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}": not found'}
        base = _container_status("base", image, {"waiting": waiting})
        return {"phase": "Pending", "conditions": scheduled, "containerStatuses": [base, sidecar]}
    terminated = {
        "succeeded": {"exitCode": 0, "reason": "Completed"},
        "oom-killed": {"exitCode": 137, "reason": "OOMKilled"},
        "job-reported-failure": {"exitCode": 2, "reason": "Error", "message": "bad input"},
    }[outcome]
    base = _container_status("base", image, {"terminated": terminated})
    return {"phase": "Running", "conditions": scheduled, "containerStatuses": [base, sidecar]}


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


class FakeKubernetes:
    """Pods in memory; each created pod jumps to the final state of ``outcome``."""

    def __init__(self) -> None:
        self.outcome = "succeeded"
        self.result: dict[str, Any] | None = None  # what the runtime wrote to /airflow/xcom/return.json
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, path) -> str:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return str(path)

    def xcom(self, pod_name: str) -> str:
        self.calls.append(f"exec cat /airflow/xcom/return.json {pod_name}")
        return json.dumps(self.result) if self.result is not None else EMPTY_XCOM

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

            def _not_found(self, name: str) -> None:
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound"}
                self._send(404, {**status, "code": 404, "message": f'pods "{name}" not found'})

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                if _EVENTS.match(url.path):
                    fake.calls.append("list events")
                    return self._send(
                        200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []}
                    )
                match = _PODS.match(url.path)
                if not match:
                    return self._send(404, {"kind": "Status", "code": 404, "message": url.path})
                name = match["name"]
                if name is None and method == "GET":
                    selector = query.get("labelSelector", "")
                    items = [
                        p for p in fake.pods.values() if _matches(p["metadata"].get("labels") or {}, selector)
                    ]
                    fake.calls.append(f"list pods ({len(items)})")
                    return self._send(
                        200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
                    )
                if name is None and method == "POST":
                    pod = self._body()
                    fake.created.append(json.loads(json.dumps(pod)))
                    pod["status"] = _final_status(fake.outcome, pod["spec"]["containers"][0]["image"])
                    fake.pods[pod["metadata"]["name"]] = pod
                    fake.calls.append(f"create pod {pod['metadata']['name']}")
                    return self._send(201, pod)
                if name not in fake.pods:
                    return self._not_found(name)
                pod = fake.pods[name]
                if match["log"]:
                    fake.calls.append(f"read log {name}")
                    prefix = "2025-03-01T06:00:01.000000000Z " if query.get("timestamps") == "true" else ""
                    return self._send(200, f"{prefix}validate: 1000 rows\n", "text/plain")
                if method == "GET":
                    return self._send(200, pod)
                if method == "PATCH":
                    pod["metadata"].setdefault("labels", {}).update(self._body()["metadata"]["labels"])
                    fake.calls.append(f"patch pod {name}")
                    return self._send(200, pod)
                if method == "DELETE":
                    fake.calls.append(f"delete pod {name}")
                    return self._send(200, fake.pods.pop(name))
                return self._send(405, {"kind": "Status", "code": 405})

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler


@pytest.fixture
def fake_k8s(monkeypatch):
    fake = FakeKubernetes()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(
        PodManager, "extract_xcom", lambda self, pod, **kwargs: fake.xcom(pod.metadata.name), raising=True
    )
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def mlflow_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


class TaskInstance(SimpleNamespace):
    """The few task-instance fields and calls the operators use; records XCom pushes."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def _context() -> dict[str, Any]:
    ti = TaskInstance(
        dag_id="churn_checks", task_id="check", run_id=RUN_ID, try_number=1, map_index=-1, xcoms={}
    )
    return {
        "ti": ti,
        "run_id": RUN_ID,
        "dag": SimpleNamespace(),
        "logical_date": datetime(2025, 3, 1, 6, tzinfo=timezone.utc),
        "outlet_events": {},
    }


def _operator(fake: FakeKubernetes, tmp_path) -> DataValidationOperator:
    return DataValidationOperator(
        task_id="check",
        input_uri="s3://data/customers/",
        expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}],
        execution_mode="kubernetes",
        image=IMAGE,
        namespace="ml",
        kubernetes_conn_id=None,
        config_file=fake.kubeconfig(tmp_path / "kubeconfig.json"),
        startup_check_interval_seconds=0,
    )


def _validation_result() -> dict[str, Any]:
    return {
        "job": "validate",
        "status": "success",
        "rows_in": 1000,
        "rows_out": 0,
        "metrics": {"expectations_evaluated": 1, "expectations_failed": 0},
        "input_digest": "d1g35t",
        "details": {
            "suite": "inline",
            "success": True,
            "report_uri": "s3://data/customers/_validation/inline/",
        },
    }


def test_pod_is_created_awaited_its_result_read_and_the_pod_deleted(fake_k8s, mlflow_store, tmp_path):
    fake_k8s.result = _validation_result()
    context = _context()

    result = _operator(fake_k8s, tmp_path).execute(context)

    assert (result["status"], result["rows_in"], result["details"]["suite"]) == ("success", 1000, "inline")
    assert result["mlflow_run_id"]
    (name,) = [call.split()[-1] for call in fake_k8s.calls if call.startswith("create pod")]
    assert fake_k8s.calls.index(f"create pod {name}") < fake_k8s.calls.index(f"read log {name}")
    assert fake_k8s.calls.index(f"read log {name}") < fake_k8s.calls.index(
        f"exec cat /airflow/xcom/return.json {name}"
    )
    assert fake_k8s.calls[-1] == f"delete pod {name}" and not fake_k8s.pods
    # what went over the wire is the secure pod, labelled for lookup, running the validate job
    (sent,) = fake_k8s.created
    main = sent["spec"]["containers"][0]
    assert main["command"] + main["args"][:1] == ["python", "-m", "airflow_ai_provider.runtime", "validate"]
    assert json.loads(main["args"][2])["mlflow"]["run_id"] == result["mlflow_run_id"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert sent["spec"]["securityContext"]["runAsUser"] == 1000
    assert sent["metadata"]["labels"]["ai.airflow.apache.org/run-id"] == "manual__2025-03-01T06_00_00_00_00"
    assert sent["metadata"]["annotations"]["ai.airflow.apache.org/mlflow-run-id"] == result["mlflow_run_id"]
    assert context["ti"].xcoms["pod_name"] == name

    import mlflow

    run = mlflow.MlflowClient().get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rows_in"] == 1000
    assert run.data.tags["ai.execution_mode"] == "kubernetes"


def test_oom_killed_pod_fails_the_task_without_retry_naming_the_memory_limit(
    fake_k8s, mlflow_store, tmp_path
):
    fake_k8s.outcome = "oom-killed"

    with pytest.raises(AirflowFailException) as err:
        _operator(fake_k8s, tmp_path).execute(_context())

    message = str(err.value)
    assert re.fullmatch(
        r"validate job pod check-\w+: container 'base' was OOMKilled \(exit 137\): it needed more memory "
        r"than its limit \(4Gi\); raise limits.memory in container_resources or the \[ai_provider\] "
        r"default_resources_<job> option, or use smaller batches",
        message,
    ), message
    assert any(call.startswith("delete pod") for call in fake_k8s.calls) and not fake_k8s.pods


def test_image_pull_backoff_is_a_retryable_task_error_naming_the_image(fake_k8s, mlflow_store, tmp_path):
    fake_k8s.outcome = "image-pull-backoff"

    with pytest.raises(JobFailedError) as err:
        _operator(fake_k8s, tmp_path).execute(_context())

    message = str(err.value)
    assert message.startswith("validate job pod check-")
    assert f"image '{IMAGE}' cannot be pulled (ImagePullBackOff: Back-off pulling image" in message
    assert "image_pull_secrets" in message and "\n" not in message
    assert not any(call.startswith("read log") for call in fake_k8s.calls)  # it never started
    assert any(call.startswith("delete pod") for call in fake_k8s.calls)


def test_a_failure_the_runtime_reports_reaches_the_task_as_the_runtimes_own_error(
    fake_k8s, mlflow_store, tmp_path
):
    fake_k8s.outcome = "job-reported-failure"
    fake_k8s.result = {
        "job": "validate",
        "status": "failed",
        "error": "input s3://data/customers/ matches no files: check the path",
        "error_type": "JobInputError",
        "retryable": False,
    }

    with pytest.raises(
        AirflowFailException, match=r"^validate job failed: input s3://data/customers/ matches no"
    ):
        _operator(fake_k8s, tmp_path).execute(_context())
