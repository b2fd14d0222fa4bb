"""Every AI operator's pod is secure by default, strictly schema-valid, and bad pod input is refused.

No Kubernetes API server can run here: pods come from ``build_pod_request_obj(dry_run=True)`` (which
needs no cluster) and are validated strictly against the Kubernetes 1.33 OpenAPI schema.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import kubernetes_validate
import pytest
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.kubernetes.pod_defaults import merge_resources
from airflow_ai_provider.kubernetes.pod_env import safe_label_value
from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.operators.quality_gate import QualityGateOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import JobSpec, MlflowRef

K8S_VERSION = "1.33.0"
PREFIX = "ai.airflow.apache.org/"
MLFLOW = MlflowRef(tracking_uri="http://mlflow:5000", run_id="0123abcd", experiment_id="7")
RUN_ID = "scheduled__2025-03-01T06:00:00+00:00"


def _infer(**kwargs):
    return BatchInferenceOperator(
        task_id="score",
        model="churn@champion",
        input_uri="s3://data/scoring/",
        output_uri="s3://data/predictions/",
        **kwargs,
    )


def _operators() -> dict[str, tuple]:
    """One operator per job type, with the spec its runtime gets."""
    return {
        "infer": (
            _infer,
            JobSpec(job="infer", inputs=["s3://d/x/"], mlflow=MLFLOW, model=ModelReference("churn", "3", "champion"),
                    output="s3://d/out/"),
        ),
        "train": (
            lambda **kw: RetrainModelOperator(
                task_id="train", training_function="include.churn_train:train", input_uri="s3://d/t/",
                label_column="churned", model_name="churn", **kw,
            ),
            JobSpec(job="train", inputs=["s3://d/t/"], mlflow=MLFLOW,
                    params={"training_function": "include.churn_train:train", "label_column": "churned",
                            "model_name": "churn"}),
        ),
        "validate": (
            lambda **kw: DataValidationOperator(
                task_id="check", input_uri="s3://d/x/",
                expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}],
                **kw,
            ),
            JobSpec(job="validate", inputs=["s3://d/x/"], mlflow=MLFLOW, params={"expectations": []}),
        ),
        "evaluate": (
            lambda **kw: QualityGateOperator(
                task_id="gate", challenger="churn/4", holdout_uri="s3://d/holdout/", label_column="churned", **kw
            ),
            JobSpec(job="evaluate", inputs=["s3://d/holdout/"], mlflow=MLFLOW, model=ModelReference("churn", "4"),
                    params={"label_column": "churned"}),
        ),
        "drift": (
            lambda **kw: DriftDetectionOperator(task_id="drift", model="churn@champion", input_uri="s3://d/x/", **kw),
            JobSpec(job="drift", inputs=["s3://d/x/"], mlflow=MLFLOW, model=ModelReference("churn", "3", "champion")),
        ),
    }  # fmt: skip


def _context(ti_extra: dict | None = None) -> dict:
    ti = SimpleNamespace(
        dag_id="churn_scoring", task_id="score", run_id=RUN_ID, try_number=2, map_index=-1, **(ti_extra or {})
    )
    return {"ti": ti, "run_id": RUN_ID, "dag": SimpleNamespace(), "logical_date": datetime.now(timezone.utc)}


def _manifest(op, spec: JobSpec, context: dict | None = None) -> dict:
    op.configure_pod_for(spec)
    return ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


# --- secure defaults on every operator's pod --------------------------------------------------------


@pytest.mark.parametrize("job", ["infer", "train", "validate", "evaluate", "drift"])
def test_every_operator_builds_a_strictly_valid_locked_down_pod(job):
    factory, spec = _operators()[job]
    manifest = _manifest(factory(execution_mode="kubernetes", namespace="ml"), spec)

    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    main, sidecar = pod["containers"]
    for container in (main, sidecar):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert container["resources"]["limits"]["memory"]
    assert main["command"] + main["args"][:1] == ["python", "-m", "airflow_ai_provider.runtime", job]
    scratch = next(m for m in main["volumeMounts"] if m["mountPath"] == "/tmp")
    assert {"name": scratch["name"], "emptyDir": {}} in pod["volumes"]
    assert _env(main)["TMPDIR"] == "/tmp"
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert manifest["metadata"]["labels"][f"{PREFIX}job"] == job


def test_resources_default_per_job_type_and_training_gets_more():
    infer = _manifest(_infer(execution_mode="kubernetes"), _operators()["infer"][1])
    train_factory, train_spec = _operators()["train"]
    train = _manifest(train_factory(execution_mode="kubernetes"), train_spec)
    assert infer["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "4Gi"},
    }
    assert train["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }


def test_configured_resources_replace_the_built_in_ones(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW__AI_PROVIDER__DEFAULT_RESOURCES_INFER",
        json.dumps({"requests": {"cpu": "3", "memory": "6Gi"}, "limits": {"cpu": "3", "memory": "6Gi"}}),
    )
    manifest = _manifest(_infer(execution_mode="kubernetes"), _operators()["infer"][1])
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "3", "memory": "6Gi"},
        "limits": {"cpu": "3", "memory": "6Gi"},
    }


def test_users_resources_win_and_a_default_limit_never_falls_below_their_request():
    op = _infer(
        execution_mode="kubernetes",
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "500m", "memory": "16Gi"}),
    )
    manifest = _manifest(op, _operators()["infer"][1])
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "16Gi"},
        "limits": {"memory": "16Gi"},  # the default 4Gi limit would make the pod invalid
    }
    # a resource the user only limited gets no default request (Kubernetes uses the limit)
    assert merge_resources({"limits": {"memory": "1Gi"}}, {"requests": {"memory": "2Gi"}}) == {
        "limits": {"memory": "1Gi"}
    }


def test_users_security_settings_win_over_the_defaults():
    op = _infer(
        execution_mode="kubernetes",
        security_context=k8s.V1PodSecurityContext(run_as_user=2000, fs_group=3000),
        container_security_context={
            "readOnlyRootFilesystem": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"]},
        },
        xcom_sidecar_container_security_context={"runAsUser": 4000},
    )
    manifest = _manifest(op, _operators()["infer"][1])
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (2000, 3000)
    assert pod["securityContext"]["runAsGroup"] == 1000  # what the user left out is still filled in
    main, sidecar = pod["containers"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is False
    assert main["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert sidecar["securityContext"]["runAsUser"] == 4000
    assert sidecar["securityContext"]["allowPrivilegeEscalation"] is False


def test_pod_template_settings_win_and_its_scratch_mount_is_kept(tmp_path):
    template = tmp_path / "pod.yaml"
    template.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {
                    "securityContext": {"runAsUser": 1234, "runAsGroup": 1234},
                    "volumes": [{"name": "fast", "emptyDir": {"medium": "Memory"}}],
                    "containers": [
                        {
                            "name": "base",
                            "image": "x",
                            "volumeMounts": [{"name": "fast", "mountPath": "/tmp"}],
                            "resources": {"limits": {"memory": "1Gi"}},
                        }
                    ],
                },
            }
        )
    )
    manifest = _manifest(
        _infer(execution_mode="kubernetes", pod_template_file=str(template)), _operators()["infer"][1]
    )
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    spec = manifest["spec"]
    assert spec["securityContext"]["runAsUser"] == 1234
    assert [v["name"] for v in spec["volumes"]].count("ai-scratch") == 0
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}


def test_gpus_shortcut_sets_limit_toleration_and_node_selector(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__GPU_NODE_SELECTOR", '{"nvidia.com/gpu.present": "true"}')
    manifest = _manifest(_infer(execution_mode="kubernetes", gpus=1), _operators()["infer"][1])
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    spec = manifest["spec"]
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "4Gi", "nvidia.com/gpu": "1"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}

    op = _infer(execution_mode="kubernetes", gpus={"count": 2, "vendor": "amd"}, gpu_node_selector={"pool": "mi300"},
                node_selector={"zone": "a"})  # fmt: skip
    spec = _manifest(op, _operators()["infer"][1])["spec"]
    assert spec["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "2"
    assert spec["tolerations"][0]["key"] == "amd.com/gpu"
    assert spec["nodeSelector"] == {"pool": "mi300", "zone": "a"}


def test_labels_annotations_and_trace_context_identify_the_run_and_model():
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = _context({"context_carrier": {"traceparent": traceparent, "tracestate": "vendor=1"}})
    manifest = _manifest(_infer(execution_mode="kubernetes"), _operators()["infer"][1], context)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    labels, annotations = manifest["metadata"]["labels"], manifest["metadata"]["annotations"]
    assert {key: value for key, value in labels.items() if key.startswith(PREFIX)} == {
        f"{PREFIX}dag-id": "churn_scoring",
        f"{PREFIX}task-id": "score",
        f"{PREFIX}run-id": "scheduled__2025-03-01T06_00_00_00_00",
        f"{PREFIX}job": "infer",
        f"{PREFIX}model-name": "churn",
        f"{PREFIX}model-version": "3",
    }
    assert annotations == {
        f"{PREFIX}dag-id": "churn_scoring",
        f"{PREFIX}task-id": "score",
        f"{PREFIX}run-id": RUN_ID,
        f"{PREFIX}mlflow-run-id": "0123abcd",
        f"{PREFIX}model-uri": "models:/churn/3",
    }
    env = _env(manifest["spec"]["containers"][0])
    assert env["TRACEPARENT"] == traceparent and env["TRACESTATE"] == "vendor=1"
    assert (env["AIRFLOW_CTX_DAG_RUN_ID"], env["AIRFLOW_CTX_TRY_NUMBER"]) == (RUN_ID, "2")


def test_long_run_ids_become_valid_distinct_label_values():
    a, b = safe_label_value("manual__" + "x" * 80 + "a"), safe_label_value("manual__" + "x" * 80 + "b")
    assert len(a) <= 63 and a != b
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"k": a}}}, K8S_VERSION,
        strict=True,
    )  # fmt: skip


def test_secrets_travel_by_reference_and_aws_connection_is_not_copied():
    op = _infer(
        execution_mode="kubernetes",
        aws_conn_id="aws_default",
        secrets=[
            Secret("env", "AWS_SECRET_ACCESS_KEY", "s3-credentials", "secret_key"),
            Secret("env", None, "mlflow-credentials"),
        ],
        service_account_name="scoring",
    )
    manifest = _manifest(op, _operators()["infer"][1])
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    main = manifest["spec"]["containers"][0]
    env = {e["name"]: e for e in main["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "secret_key"}},
    }
    assert main["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]
    assert "AWS_ACCESS_KEY_ID" not in env and "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert "aws" not in main["args"][2].lower()  # nothing of the connection in the job spec


# --- bad input, refused at DAG parse or task start --------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"container_resources": k8s.V1ResourceRequirements(requests={"cpu": "2 cores"})},
            "container_resources.requests.cpu='2 cores' is not a Kubernetes quantity",
        ),
        ({"container_resources": {"limits": {"memory": "4GB RAM"}}}, "limits.memory='4GB RAM'"),
        (
            {"container_resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "4Gi"}}},
            "requests.memory='8Gi' is above limits.memory='4Gi'",
        ),
        ({"gpus": {"count": 1, "vendor": "nvidai"}}, "gpus vendor='nvidai' is unknown: use one of amd, intel, nvidia"),
        ({"gpus": -1}, "gpus count=-1"),
        ({"env_vars": {"MLFLOW_TRACKING_PASSWORD": "hunter2"}}, "MLFLOW_TRACKING_PASSWORD is given as a literal value"),
        (
            {"env_vars": [k8s.V1EnvVar(name="AWS_SECRET_ACCESS_KEY", value="abc")]},
            "AWS_SECRET_ACCESS_KEY is given as a literal value",
        ),
        ({"env_vars": {"HF_TOKEN": "{{ var.value.hf }}"}}, "HF_TOKEN is given as a literal value"),
        ({"cmds": ["bash", "-c", "echo hi"]}, "cmds= is not allowed"),
        (
            {"full_pod_spec": k8s.V1Pod(spec=k8s.V1PodSpec(containers=[
                k8s.V1Container(name="proxy", image="envoy"), k8s.V1Container(name="base", image="x")]))},
            "full_pod_spec puts container 'proxy' first",
        ),
    ],
)  # fmt: skip
def test_bad_pod_input_is_refused_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(AiProviderConfigError) as err:
        _infer(execution_mode="kubernetes", **kwargs)
    assert message in str(err.value)
    assert str(err.value).startswith("score: ") and "\n" not in str(err.value)
    assert "hunter2" not in str(err.value) and "abc'" not in str(err.value)


def test_non_secret_names_and_referenced_secrets_are_accepted():
    _infer(
        env_vars=[
            k8s.V1EnvVar(name="TOKENIZER_NAME", value="bert-base"),
            k8s.V1EnvVar(
                name="MLFLOW_TRACKING_TOKEN",
                value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="m", key="t")),
            ),
        ]
    )


def test_pod_template_file_that_moves_the_main_container_is_refused_at_task_start(tmp_path):
    template = tmp_path / "pod.yaml"
    template.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": {
                    "containers": [{"name": "vault-agent", "image": "vault"}, {"name": "base", "image": "x"}]
                },
            }
        )
    )
    op = _infer(execution_mode="kubernetes", pod_template_file=str(template))  # read only at task start
    with pytest.raises(
        AiProviderConfigError, match="the job's container 'base' .* must be containers\\[0\\]"
    ):
        _manifest(op, _operators()["infer"][1])


def test_a_pod_that_does_not_run_the_runtime_is_refused_at_task_start(monkeypatch):
    op = _infer(execution_mode="kubernetes")
    op.cmds, op.arguments = ["/entrypoint.sh"], ["serve"]  # e.g. set by a pod mutation or a subclass
    with pytest.raises(AiProviderConfigError, match="runs '/entrypoint.sh serve', not 'python -m"):
        ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))


def test_rendered_secret_literal_is_refused_at_task_start():
    op = _infer(execution_mode="kubernetes")
    op.env_vars = {"DB_PASSWORD": "rendered-from-a-template"}  # what rendering a templated value gives
    with pytest.raises(AiProviderConfigError, match="DB_PASSWORD is given as a literal value"):
        _manifest(op, _operators()["infer"][1])


def test_bad_configured_resources_name_the_option(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__DEFAULT_RESOURCES_DRIFT", '{"requests": {"cpu": "2 cores"}}')
    factory, spec = _operators()["drift"]
    with pytest.raises(AiProviderConfigError, match=r"\[ai_provider\] default_resources_drift .*'2 cores'"):
        _manifest(factory(execution_mode="kubernetes"), spec)
