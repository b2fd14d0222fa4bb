"""Pods built in kubernetes mode are valid Kubernetes objects that run the same runtime command.

No Kubernetes API server can run here: the pods come from ``build_pod_request_obj(dry_run=True)``,
which needs no cluster, and are validated strictly against the Kubernetes OpenAPI schema.
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import JobSpec, MlflowRef, Shard

K8S_VERSION = "1.33.0"


def _spec(shard: Shard | None = None) -> JobSpec:
    return JobSpec(
        job="infer",
        model=ModelReference("churn", "3", "champion"),
        inputs=["s3://data/scoring/"],
        output="s3://data/predictions/run1",
        mlflow=MlflowRef(tracking_uri="http://mlflow:5000", run_id="abc"),
        params={"id_columns": ["customer_id"]},
        shard=shard or Shard(),
    )


def _build(op: BatchInferenceOperator, spec: JobSpec | None = None) -> dict:
    op.configure_pod_for(spec or _spec())
    pod = op.build_pod_request_obj(dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def _operator(**kwargs) -> BatchInferenceOperator:
    return BatchInferenceOperator(
        task_id="score",
        model="churn@champion",
        input_uri="s3://data/scoring/",
        output_uri="s3://data/predictions/run1",
        execution_mode="kubernetes",
        namespace="ml",
        **kwargs,
    )


def test_default_pod_is_schema_valid_and_runs_the_runtime():
    manifest = _build(_operator(image="registry.local/churn-runtime:1.0"))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    main = manifest["spec"]["containers"][0]
    assert main["image"] == "registry.local/churn-runtime:1.0"
    assert main["command"] == ["python", "-m", "airflow_ai_provider.runtime"]
    assert main["args"][:2] == ["infer", "--spec-json"]
    assert JobSpec.from_json(main["args"][2]) == _spec()
    names = [c["name"] for c in manifest["spec"]["containers"]]
    assert names == ["base", "airflow-xcom-sidecar"]  # the sidecar reads /airflow/xcom/return.json
    assert manifest["spec"]["restartPolicy"] == "Never"


def test_kubernetes_pod_operator_options_pass_through_and_stay_valid():
    from airflow.providers.cncf.kubernetes.secret import Secret

    op = _operator(
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "2", "memory": "4Gi"}, limits={"memory": "8Gi", "nvidia.com/gpu": "1"}
        ),
        node_selector={"pool": "gpu"},
        tolerations=[k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        secrets=[Secret("env", "MLFLOW_TRACKING_TOKEN", "mlflow-credentials", "token")],
        env_vars={"AWS_ENDPOINT_URL_S3": "http://minio:9000"},
        labels={"team": "growth"},
        service_account_name="scoring",
    )
    manifest = _build(op)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    spec = manifest["spec"]
    main = spec["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["serviceAccountName"] == "scoring"
    token = next(env for env in main["env"] if env["name"] == "MLFLOW_TRACKING_TOKEN")
    assert token == {
        "name": "MLFLOW_TRACKING_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mlflow-credentials", "key": "token"}},
    }
    assert manifest["metadata"]["labels"]["team"] == "growth"


@pytest.mark.parametrize("index", [0, 3])
def test_each_shard_gets_its_own_valid_pod(index):
    op = _operator(shard_count=4, shard_index=index)
    manifest = _build(op, _spec(Shard(index, 4)))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert JobSpec.from_json(manifest["spec"]["containers"][0]["args"][2]).shard == Shard(index, 4)


def test_pod_template_file_is_honoured(tmp_path):
    template = tmp_path / "pod.yaml"
    template.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "from-template"},
                "spec": {"priorityClassName": "batch", "containers": [{"name": "base", "image": "x"}]},
            }
        )
    )
    manifest = _build(_operator(pod_template_file=str(template)))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["priorityClassName"] == "batch"
    assert manifest["spec"]["containers"][0]["command"][0] == "python"


def test_strict_schema_validation_rejects_an_unknown_field():
    manifest = _build(_operator())
    manifest["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_a_pod_that_mounts_a_cache_volume_keeps_its_model_cache_there(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__MODEL_CACHE_MAX_MB", "4096")
    op = _operator(
        volumes=[k8s.V1Volume(name="models", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="5Gi"))],
        volume_mounts=[k8s.V1VolumeMount(name="models", mount_path="/var/cache/airflow-ai-models")],
    )
    manifest = _build(op)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    env = {e["name"]: e.get("value") for e in manifest["spec"]["containers"][0]["env"]}
    assert env["AI_PROVIDER_MODEL_CACHE"] == "/var/cache/airflow-ai-models/models:4096"


@pytest.mark.parametrize(
    "mount",
    [None, k8s.V1VolumeMount(name="models", mount_path="/var/cache/airflow-ai-models", read_only=True)],
)
def test_a_pod_without_a_writable_cache_volume_has_no_model_cache(mount):
    extra = {}
    if mount is not None:
        extra = {"volumes": [k8s.V1Volume(name="models", empty_dir={})], "volume_mounts": [mount]}
    manifest = _build(_operator(**extra))
    names = [e["name"] for e in manifest["spec"]["containers"][0].get("env") or []]
    assert "AI_PROVIDER_MODEL_CACHE" not in names
