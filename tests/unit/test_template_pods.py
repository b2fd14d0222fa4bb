"""The templates in kubernetes mode: every AI task's pod runs the configured image, gets S3 credentials
by reference only, the configured service account, resources and MLflow connection, and keeps the
secure defaults; unconfigured templates build plain default pods and parse as before in local mode.

The AI tasks are enumerated from the templates' DAGs as the DAG processor parses them (``DagBag``),
mapped ``score`` shard by shard, so a new AI task in a template is covered without a change here.
No Kubernetes API server can run here: pods come from ``build_pod_request_obj(dry_run=True)`` (which
needs no cluster) and are validated strictly against the Kubernetes 1.33 OpenAPI schema.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient

from airflow_ai_provider.config import ExecutionMode, default_runtime_image
from airflow_ai_provider.credentials import is_secret_name, secret_value_kind
from airflow_ai_provider.kubernetes.pod_checks import CONTAINER_KINDS, resources_dict
from airflow_ai_provider.mlflow_runs import TaskRun
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.operators.task_run import MlflowTaskRunMixin
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import JobSpec, Shard
from tests.conftest import REPO_ROOT

K8S_VERSION = "1.33.0"
TEMPLATES = (
    "churn_ingest",
    "churn_retrain",
    "churn_batch_inference",
    "churn_drift_monitor",
    "content_embedder_train",
    "content_reembed",
)
IMAGE = "registry.example.com/churn-runtime:2.1"
MLFLOW_HOST = "http://mlflow.ml.svc:5000"
#: The templates' deployment settings, as a cluster deployment sets them.
DEPLOYMENT = {
    "AI_TEMPLATES_IMAGE": IMAGE,
    "AI_TEMPLATES_S3_SECRET": "s3-credentials",
    "AI_TEMPLATES_RUNTIME_CONFIGMAP": "ai-runtime",
    "AI_TEMPLATES_SERVICE_ACCOUNT": "ai-jobs",
    "AI_TEMPLATES_MLFLOW_CONN_ID": "mlflow_k8s",
    "AI_TEMPLATES_AWS_CONN_ID": "aws_minio",
}
#: Each known AI task and the config-block constant of its template that sets its resources.
CONFIGURED_RESOURCES = {
    ("churn_ingest", "validate"): "VALIDATE_RESOURCES",
    ("churn_retrain", "train"): "TRAIN_RESOURCES",
    ("churn_retrain", "quality_gate"): "SCORING_RESOURCES",
    ("churn_retrain", "smoke_score"): "SCORING_RESOURCES",
    ("churn_batch_inference", "score"): "SCORE_RESOURCES",
    ("churn_drift_monitor", "detect_drift"): "DRIFT_RESOURCES",
    ("content_embedder_train", "train"): "TRAIN_RESOURCES",
    ("content_reembed", "embed"): "EMBED_RESOURCES",
}
#: Jobs whose spec names a model version.
MODEL_JOBS = {"infer", "evaluate", "drift"}
RUN = TaskRun(experiment_id="7", parent_run_id="p1", run_id="r1", url=None)


@dataclass
class TemplatePod:
    """One AI task of a template (one shard of a mapped task), its operator and its built pod."""

    dag_id: str
    task_id: str
    map_index: int
    operator: AiJobOperator
    manifest: dict[str, Any]
    mode: ExecutionMode  # where the task would run, under the environment it was parsed with

    @property
    def name(self) -> str:
        return f"{self.dag_id}.{self.task_id}" + (f"[{self.map_index}]" if self.map_index >= 0 else "")

    @property
    def main(self) -> dict[str, Any]:
        return self.manifest["spec"]["containers"][0]

    @property
    def spec(self) -> dict[str, Any]:
        """The job spec the pod's runtime gets (its JSON argument)."""
        return json.loads(self.main["args"][2])

    def containers(self) -> Iterator[dict[str, Any]]:
        for kind in CONTAINER_KINDS:
            yield from self.manifest["spec"].get(kind) or []


def _parse_templates() -> dict[str, Any]:
    """The templates' DAGs, parsed from their files as the DAG processor does (fresh, not cached)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO_ROOT / "dag_templates"))
    assert bag.import_errors == {}
    assert set(bag.dags) == set(TEMPLATES)
    return bag.dags


def _ai_tasks(dags: dict[str, Any]) -> Iterator[tuple[str, int, AiJobOperator]]:
    """``(dag_id, map_index, operator)`` of every AI task; a mapped task once per mapped value."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    for dag_id, dag in sorted(dags.items()):
        for task in dag.tasks:
            if isinstance(task, MappedOperator) and issubclass(task.operator_class, AiJobOperator):
                (name, values), *others = task.expand_input.value.items()
                assert not others, f"{dag_id}.{task.task_id} maps over more than {name}"
                for index, value in enumerate(values):
                    yield dag_id, index, task.unmap({name: value})
            elif isinstance(task, AiJobOperator):
                yield dag_id, -1, task


def _context(dag_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id=dag_id, task_id=task_id, run_id="manual__1", try_number=1, map_index=map_index
    )
    return {
        "ti": ti,
        "run_id": ti.run_id,
        "dag": SimpleNamespace(),
        "logical_date": datetime.now(timezone.utc),
    }


def _build(dag_id: str, map_index: int, op: AiJobOperator) -> TemplatePod:
    """The pod ``op`` builds for a job spec as its task would (its own MLflow connection and shard)."""
    spec = JobSpec(
        job=op.job_type,
        inputs=["s3://data/in/"],
        mlflow=op.mlflow_ref(RUN),
        model=ModelReference("churn", "3") if op.job_type in MODEL_JOBS else None,
        output="s3://data/out/" if op.job_type == "infer" else None,
        shard=Shard(int(op.shard_index), int(op.shard_count)) if op.job_type == "infer" else Shard(),
    )
    op.configure_pod_for(spec)
    pod = op.build_pod_request_obj(_context(dag_id, op.task_id, map_index), dry_run=True)
    manifest = ApiClient().sanitize_for_serialization(pod)
    return TemplatePod(dag_id, op.task_id, map_index, op, manifest, op.resolved_execution_mode)


@dataclass
class Parsed:
    """The templates parsed under one environment: their DAGs, their AI pods, and secrets planted."""

    dags: dict[str, Any]
    pods: list[TemplatePod]
    secrets: list[str]


def _templates_under(environment: dict[str, str], unset: tuple[str, ...] = ()) -> Parsed:
    """Parse the templates and build every AI pod with ``environment`` set and ``unset`` removed."""
    secrets = [f"AKIA{uuid.uuid4().hex[:16].upper()}", f"s3cr3t-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"]
    connections = {
        "AIRFLOW_CONN_MLFLOW_K8S": {
            "conn_type": "mlflow",
            "host": MLFLOW_HOST.replace("http://", f"http://alice:{secrets[2]}@"),
        },
        "AIRFLOW_CONN_AWS_MINIO": {
            "conn_type": "aws",
            "login": secrets[0],
            "password": secrets[1],
            "extra": {"endpoint_url": "http://minio.storage:9000", "region_name": "eu-west-1"},
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in unset:
            patch.delenv(name, raising=False)
        for name, value in {**environment, **{k: json.dumps(v) for k, v in connections.items()}}.items():
            patch.setenv(name, value)
        dags = _parse_templates()
        pods = [_build(dag_id, index, op) for dag_id, index, op in _ai_tasks(dags)]
    return Parsed(dags, pods, secrets)


@pytest.fixture(scope="module")
def configured() -> Parsed:
    """The templates in kubernetes mode with every deployment setting given."""
    return _templates_under({"AIRFLOW__AI_PROVIDER__EXECUTION_MODE": "kubernetes", **DEPLOYMENT})


@pytest.fixture(scope="module")
def unconfigured() -> Parsed:
    """The templates in kubernetes mode with no deployment setting."""
    return _templates_under({"AIRFLOW__AI_PROVIDER__EXECUTION_MODE": "kubernetes"}, unset=tuple(DEPLOYMENT))


def test_every_ai_task_of_every_template_gets_a_kubernetes_mode_pod(configured):
    built = {(pod.dag_id, pod.task_id) for pod in configured.pods}
    assert set(CONFIGURED_RESOURCES) <= built
    shards = [pod.map_index for pod in configured.pods if pod.task_id == "score"]
    score = configured.dags["churn_batch_inference"].get_task("score")
    assert shards == list(range(score.partial_kwargs["shard_count"])) and len(shards) > 1
    for pod in configured.pods:
        assert pod.mode is ExecutionMode.KUBERNETES, pod.name
        kubernetes_validate.validate(pod.manifest, K8S_VERSION, strict=True)
        assert pod.main["command"] + pod.main["args"][:1] == [
            "python", "-m", "airflow_ai_provider.runtime", pod.operator.job_type
        ], pod.name  # fmt: skip


def test_every_template_pod_runs_the_configured_image(configured):
    for pod in configured.pods:
        assert pod.main["image"] == IMAGE, pod.name


def test_s3_credentials_reach_every_template_pod_by_reference_only(configured):
    for pod in configured.pods:
        assert pod.main["envFrom"] == [
            {"secretRef": {"name": "s3-credentials"}},
            {"configMapRef": {"name": "ai-runtime"}},
        ], pod.name
        assert pod.operator.aws_conn_id == "aws_minio", pod.name  # for local runtimes only
        for container in pod.containers():
            for entry in container.get("env") or []:
                assert not entry["name"].startswith("AWS_"), (pod.name, entry["name"])
                if "value" in entry:
                    assert not is_secret_name(entry["name"]), (pod.name, entry["name"])
                    assert secret_value_kind(entry["value"]) is None, (pod.name, entry["name"])
        text = json.dumps(pod.manifest)
        for secret in configured.secrets:  # the AWS connection's keys, the MLflow password
            assert secret not in text, pod.name


def test_every_template_pod_runs_as_the_configured_service_account(configured):
    for pod in configured.pods:
        assert pod.manifest["spec"]["serviceAccountName"] == "ai-jobs", pod.name


def _assert_secure_defaults(pod: TemplatePod) -> None:
    spec = pod.manifest["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }, pod.name
    names = [container["name"] for container in spec["containers"]]
    assert names == ["base", "airflow-xcom-sidecar"], pod.name
    for container in spec["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }, (pod.name, container["name"])
    assert {"name": "ai-scratch", "mountPath": "/tmp"} in pod.main["volumeMounts"], pod.name
    assert {"name": "ai-scratch", "emptyDir": {}} in spec["volumes"], pod.name
    assert spec["restartPolicy"] == "Never", pod.name


def test_every_template_pod_keeps_the_secure_defaults(configured):
    for pod in configured.pods:
        _assert_secure_defaults(pod)


def test_every_template_pod_gets_the_resources_its_config_block_sets(configured):
    for pod in configured.pods:
        configured_resources = pod.operator.container_resources
        assert configured_resources is not None, f"{pod.name}: its template's config block sets no resources"
        assert pod.main["resources"] == resources_dict(configured_resources), pod.name
        assert not any("/" in name for name in pod.main["resources"].get("limits", {})), pod.name  # gpus=None
        assert not pod.manifest["spec"].get("tolerations"), pod.name
    for (template, task_id), constant in CONFIGURED_RESOURCES.items():
        expected = resources_dict(getattr(importlib.import_module(f"dag_templates.{template}"), constant))
        for pod in configured.pods:
            if (pod.dag_id, pod.task_id) == (template, task_id):
                assert pod.main["resources"] == expected, pod.name
    train = next(pod for pod in configured.pods if pod.task_id == "train")
    assert (
        train.main["resources"]["limits"]["memory"]
        != next(pod for pod in configured.pods if pod.task_id == "validate").main["resources"]["limits"][
            "memory"
        ]
    )  # per task, not one size for all


def test_every_template_task_uses_the_configured_mlflow_connection(configured):
    for pod in configured.pods:
        assert pod.operator.mlflow_conn_id == "mlflow_k8s", pod.name
        assert pod.spec["mlflow"]["tracking_uri"] == MLFLOW_HOST, (
            pod.name
        )  # the connection's, credentials stripped
    others = [
        (dag_id, task.task_id)
        for dag_id, dag in configured.dags.items()
        for task in dag.tasks
        if isinstance(task, MlflowTaskRunMixin) and not isinstance(task, AiJobOperator)
    ]
    assert {("churn_retrain", "promote"), ("churn_retrain", "rollback")} <= set(others)
    for dag_id, task_id in others:
        assert configured.dags[dag_id].get_task(task_id).mlflow_conn_id == "mlflow_k8s", (dag_id, task_id)


@pytest.mark.parametrize(
    ("template", "task_id", "config", "resource", "count"),
    [
        ("churn_retrain", "train", {"TRAIN_GPUS": "1"}, "nvidia.com/gpu", "1"),
        ("content_reembed", "embed", {"EMBED_GPUS": "1"}, "nvidia.com/gpu", "1"),
        (
            "churn_batch_inference",
            "score",
            {"SCORE_GPUS": '{"count": 2, "vendor": "amd"}'},
            "amd.com/gpu",
            "2",
        ),
    ],
)
def test_gpus_set_in_a_config_block_reach_the_pod_with_their_toleration(
    template, task_id, config, resource, count
):
    from tests.dags.adapted_template_dags import adapted_template

    dag = adapted_template(template, config)
    dag_id, index, op = next(item for item in _ai_tasks({dag.dag_id: dag}) if item[2].task_id == task_id)
    pod = _build(dag_id, index, op)
    assert pod.main["resources"]["limits"][resource] == count
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in pod.manifest["spec"][
        "tolerations"
    ]
    _assert_secure_defaults(pod)


def test_unconfigured_templates_build_pods_with_no_env_from_and_the_default_image(unconfigured):
    assert {(pod.dag_id, pod.task_id) for pod in unconfigured.pods} >= set(CONFIGURED_RESOURCES)
    for pod in unconfigured.pods:
        kubernetes_validate.validate(pod.manifest, K8S_VERSION, strict=True)
        assert pod.main["image"] == default_runtime_image(), pod.name
        assert not pod.main.get("envFrom"), pod.name
        assert "serviceAccountName" not in pod.manifest["spec"], pod.name
        assert pod.operator.mlflow_conn_id == "mlflow_default", pod.name
        assert pod.operator.aws_conn_id is None, pod.name
        _assert_secure_defaults(pod)


def test_templates_parse_in_local_mode_with_the_deployment_settings_unset():
    parsed = _templates_under({}, unset=("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", *DEPLOYMENT))
    assert {pod.task_id for pod in parsed.pods} == {task_id for _, task_id in CONFIGURED_RESOURCES}
    for pod in parsed.pods:
        assert pod.mode is ExecutionMode.LOCAL, pod.name
        op = pod.operator
        assert (op.env_from, op.service_account_name, op.aws_conn_id) == ([], None, None), pod.name
