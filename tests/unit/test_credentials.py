"""Secrets by one rule: a credential planted anywhere a user can put one reaches no spec, pod, error
message or log, and literal secrets are refused in every container of a pod.

Each probe plants a unique secret (``s3cr3t-<uuid>``) and checks the places it could leak to. Pods come
from ``build_pod_request_obj(dry_run=True)`` (no Kubernetes API server can run here); the runtime probe
runs the real runtime CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from airflow_ai_provider.credentials import (
    is_secret_name,
    is_secret_query_param,
    secret_value_kind,
    split_credentials,
)
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.mlflow_registry import resolve_model
from airflow_ai_provider.mlflow_runs import TaskRun
from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.operators.quality_gate import QualityGateOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import JobSpec

EXPECTATIONS = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}]


@pytest.fixture
def secret() -> str:
    return f"s3cr3t-{uuid.uuid4().hex}"


def _redacted(text: str) -> str:
    """``text`` as Airflow's secrets masker writes it into task logs and rendered fields."""
    from airflow.sdk._shared.secrets_masker import redact

    return redact(text)


def _refusal(factory, secret: str) -> str:
    with pytest.raises(AiProviderConfigError) as err:
        factory()
    message = str(err.value)
    assert secret not in message and "\n" not in message
    return message


# --- the rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "clean", "found"),
    [
        ("https://alice:pw@mlflow.example.com:5000/x", "https://mlflow.example.com:5000/x", "a user name and password"),
        ("s3://AKIAIOSFODNN7EXAMPLE:pw@bucket/key", "s3://bucket/key", "a user name and password"),
        ("s3://bucket/k?versionId=3&token=pw", "s3://bucket/k?versionId=3", "query parameter token"),
        (
            "https://b.s3.amazonaws.com/k.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2025"
            "&X-Amz-Signature=pw&X-Amz-Security-Token=pw2",
            "https://b.s3.amazonaws.com/k.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "query parameters X-Amz-Credential, X-Amz-Signature, X-Amz-Security-Token",
        ),
        ("https://acct.blob.core.windows.net/c/x?sv=2022-11-02&sig=pw", "https://acct.blob.core.windows.net/c/x?sv=2022-11-02", "query parameter sig"),
        ("https://storage.googleapis.com/b/o?X-Goog-Signature=pw", "https://storage.googleapis.com/b/o", "query parameter X-Goog-Signature"),
        ("https://h/x?access_token=pw&api_key=pw2", "https://h/x", "query parameters access_token, api_key"),
    ],
)  # fmt: skip
def test_a_uri_splits_into_a_credential_free_uri_and_what_it_carried(uri, clean, found):
    scrubbed, credentials = split_credentials(uri)
    assert scrubbed == clean
    assert credentials.describe() == found
    assert "pw" not in repr(credentials)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/part-?.parquet",
        "/data/a@b/x.csv",
        "file:///tmp/x",
        "s3://b/k?versionId=3&key=k",
        "relative/p",
    ],
)
def test_a_uri_without_credentials_comes_back_unchanged(uri):
    assert split_credentials(uri) == (uri, split_credentials("")[1])
    assert not split_credentials(uri)[1]


def test_names_and_values_judged_secret():
    assert is_secret_name("HF_TOKEN") and is_secret_name("aws-secret-access-key")
    assert (
        not is_secret_name("TOKENIZER_NAME") and not is_secret_name("PWD") and not is_secret_name("AUTH_MODE")
    )
    assert (
        is_secret_query_param("X-Amz-Signature")
        and is_secret_query_param("sig")
        and is_secret_query_param("pwd")
    )
    assert not is_secret_query_param("key") and not is_secret_query_param("versionId")
    assert secret_value_kind("AKIAIOSFODNN7EXAMPLE") == "an AWS access key id"
    assert secret_value_kind("postgresql://app:pw@db/app") == "a URI with credentials"
    assert secret_value_kind("-----BEGIN OPENSSH PRIVATE KEY-----\nabc") == "a private key"
    for innocent in (
        "bert-base",
        "http://minio.storage:9000",
        "git+ssh://git@github.com/org/repo",
        "{{ var.value.x }}",
    ):
        assert secret_value_kind(innocent) is None


# --- URI arguments of every AI operator --------------------------------------------------------------


def _operators(uri: str) -> dict[str, object]:
    """A factory per (operator, URI argument) that plants ``uri`` in that argument."""
    infer = dict(task_id="score", model="churn@champion", input_uri="s3://d/in/", output_uri="s3://d/out/")
    train = dict(
        task_id="train", training_function="m:f", input_uri="s3://d/t/", label_column="y", model_name="m"
    )
    check = dict(task_id="check", input_uri="s3://d/x/", expectations=EXPECTATIONS)
    return {
        "infer input_uri": lambda: BatchInferenceOperator(**{**infer, "input_uri": uri}),
        "infer input_uri list": lambda: BatchInferenceOperator(**{**infer, "input_uri": ["s3://d/a/", uri]}),
        "infer output_uri": lambda: BatchInferenceOperator(**{**infer, "output_uri": uri}),
        "train input_uri": lambda: RetrainModelOperator(**{**train, "input_uri": uri}),
        "validate input_uri": lambda: DataValidationOperator(**{**check, "input_uri": uri}),
        "validate suite_uri": lambda: DataValidationOperator(
            task_id="check", input_uri="s3://d/x/", suite_uri=uri
        ),
        "validate report_uri": lambda: DataValidationOperator(**check, report_uri=uri),
        "evaluate holdout_uri": lambda: QualityGateOperator(
            task_id="gate", challenger="churn/2", holdout_uri=uri, label_column="y"
        ),
        "drift input_uri": lambda: DriftDetectionOperator(
            task_id="drift", model="churn@champion", input_uri=uri
        ),
    }


PLANTS = {
    "userinfo": ("s3://AKIAIOSFODNN7EXAMPLE:{s}@data/in/", "s3://data/in/"),
    "query token": ("s3://data/in/?token={s}", "s3://data/in/"),
    "presigned S3 URL": (
        "https://data.s3.amazonaws.com/in.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={s}",
        "https://data.s3.amazonaws.com/in.parquet?X-Amz-Algorithm=AWS4-HMAC-SHA256",
    ),
}


@pytest.mark.parametrize("plant", list(PLANTS))
@pytest.mark.parametrize("where", list(_operators("x")))
def test_uri_argument_with_credentials_is_refused_at_dag_parse_and_masked(where, plant, secret):
    template, clean = PLANTS[plant]
    message = _refusal(_operators(template.format(s=secret))[where], secret)
    argument = where.split()[1]
    assert f"{argument}={clean!r} carries credentials" in message
    assert "aws_conn_id=" in message and "secrets=" in message and "service account" in message
    assert secret not in _redacted(f"log line with {secret}")  # registered with the secrets masker


def test_rendered_uri_argument_with_credentials_is_refused_when_it_renders(secret):
    op = BatchInferenceOperator(
        task_id="score", model="churn@champion", input_uri="{{ params.source }}", output_uri="s3://d/out/"
    )  # templated: checked once rendered
    context = {"params": {"source": f"s3://AKIAIOSFODNN7EXAMPLE:{secret}@data/in/"}}
    with pytest.raises(AiProviderConfigError) as err:
        op.render_template_fields(context)
    assert "score: input_uri='s3://data/in/' carries credentials" in str(err.value)
    assert secret not in str(err.value) and op.input_uri == "{{ params.source }}"
    assert secret not in _redacted(secret)


# --- the MLflow connection --------------------------------------------------------------------------


def _connection(monkeypatch, host: str, **extra) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": host, "extra": extra})
    )


def _run() -> TaskRun:
    return TaskRun(experiment_id="7", parent_run_id="p1", run_id="r1", url=None)


def test_connection_passwords_and_token_reach_no_spec_and_no_pod(monkeypatch, secret):
    _connection(
        monkeypatch,
        f"https://alice:{secret}@mlflow.example.com",
        registry_uri=f"https://alice:{secret}@registry.example.com/",
        token=f"{secret}-token",
    )
    op = BatchInferenceOperator(
        task_id="score", model="churn@champion", input_uri="s3://d/in/", output_uri="s3://d/out/",
        execution_mode="kubernetes",
    )  # fmt: skip
    ref = op.mlflow_ref(_run())
    assert (ref.tracking_uri, ref.registry_uri) == (
        "https://mlflow.example.com",
        "https://registry.example.com/",
    )
    spec = JobSpec(
        job="infer",
        inputs=["s3://d/in/"],
        mlflow=ref,
        model=ModelReference("churn", "3"),
        output="s3://d/out/",
    )
    op.configure_pod_for(spec)
    ti = SimpleNamespace(dag_id="d", task_id="score", run_id="r", try_number=1, map_index=-1)
    context = {"ti": ti, "run_id": "r", "dag": SimpleNamespace(), "logical_date": datetime.now(timezone.utc)}
    manifest = json.dumps(
        ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))
    )
    assert secret not in spec.to_json() and secret not in manifest  # args, env, labels, annotations
    assert op.mlflow_hook.runtime_env()["MLFLOW_TRACKING_PASSWORD"] == secret  # by environment, locally
    assert op.mlflow_hook.runtime_env()["MLFLOW_TRACKING_TOKEN"] == f"{secret}-token"
    assert secret not in _redacted(f"{secret} and {secret}-token")


def test_tracking_uri_from_the_environment_is_scrubbed_too(monkeypatch, secret):
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:{secret}@127.0.0.1:5999")
    hook = MlflowHook()
    assert hook.tracking_uri == "http://127.0.0.1:5999"
    assert hook.runtime_env()["MLFLOW_TRACKING_PASSWORD"] == secret


@pytest.mark.parametrize(
    ("host", "extra", "message"),
    [
        ("https://mlflow.example.com/?token={s}", {}, "Tracking URI 'https://mlflow.example.com/' carries query parameter token"),
        ("https://mlflow.example.com", {"registry_uri": "https://r.example.com/?sig={s}"}, "registry_uri 'https://r.example.com/' carries"),
        ("postgresql://app:{s}@db.example.com/mlflow", {}, "'postgresql://db.example.com/mlflow' carries a password"),
        ("https://a:{s}@m.example.com", {"registry_uri": "https://b:{s}-2@r.example.com"}, "carry different credentials"),
    ],
)  # fmt: skip
def test_connection_uri_credentials_mlflow_cannot_take_are_refused(monkeypatch, secret, host, extra, message):
    _connection(monkeypatch, host.format(s=secret), **{k: v.format(s=secret) for k, v in extra.items()})
    text = _refusal(lambda: MlflowHook().settings, secret)
    assert text.startswith("MLflow connection 'mlflow_default'") and message in text


def test_hook_errors_name_the_server_without_its_credentials(monkeypatch, secret):
    from airflow_ai_provider.exceptions import MlflowUnavailableError

    _connection(
        monkeypatch, f"http://alice:{secret}@127.0.0.1:9", registry_uri=f"http://alice:{secret}@127.0.0.1:9"
    )
    hook = MlflowHook()
    with pytest.raises(MlflowUnavailableError) as err:
        resolve_model(hook, "churn@champion")
    assert str(err.value).startswith("MLflow tracking server http://127.0.0.1:9 is unreachable")
    ok, message = hook.test_connection()
    assert not ok and secret not in str(err.value) and secret not in message


def test_aws_connection_endpoint_with_credentials_is_refused(monkeypatch, secret):
    from airflow_ai_provider.aws_credentials import aws_runtime_env

    aws = {"conn_type": "aws", "extra": {"endpoint_url": f"http://minio:{secret}@minio.storage:9000"}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PROBE", json.dumps(aws))
    text = _refusal(lambda: aws_runtime_env("aws_probe"), secret)
    assert "endpoint_url 'http://minio.storage:9000' carries credentials" in text


# --- literal secrets in every container of a pod ----------------------------------------------------


def _infer(**kwargs) -> BatchInferenceOperator:
    return BatchInferenceOperator(
        task_id="score", model="churn@champion", input_uri="s3://d/in/", output_uri="s3://d/out/",
        execution_mode="kubernetes", **kwargs,
    )  # fmt: skip


def _pod(**spec) -> k8s.V1Pod:
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base")], **spec))


def _container(name: str, env_name: str, value: str) -> dict:
    return {"name": name, "image": "busybox", "env": [{"name": env_name, "value": value}]}


def test_init_container_literal_secret_in_full_pod_spec_is_refused_at_parse(secret):
    pod = _pod(
        init_containers=[
            k8s.V1Container(name="fetch", env=[k8s.V1EnvVar(name="AWS_SECRET_ACCESS_KEY", value=secret)])
        ]
    )
    text = _refusal(lambda: _infer(full_pod_spec=pod), secret)
    assert (
        "full_pod_spec init container 'fetch' env: AWS_SECRET_ACCESS_KEY is given as a literal value" in text
    )


def test_sidecar_literal_secret_in_pod_template_dict_is_refused_at_parse(secret):
    template = {"spec": {"containers": [{"name": "base"}, _container("proxy", "PROXY_PASSWORD", secret)]}}
    text = _refusal(lambda: _infer(pod_template_dict=template), secret)
    assert "pod_template_dict container 'proxy' env: PROXY_PASSWORD is given as a literal value" in text


def test_ephemeral_container_literal_secret_is_refused_at_parse(secret):
    pod = _pod(
        ephemeral_containers=[
            k8s.V1EphemeralContainer(name="debug", env=[k8s.V1EnvVar(name="GH_TOKEN", value=secret)])
        ]
    )
    assert "ephemeral container 'debug' env: GH_TOKEN" in _refusal(lambda: _infer(full_pod_spec=pod), secret)


def test_literal_secret_in_a_pod_template_file_is_refused_at_task_start(tmp_path, secret):
    template = tmp_path / "pod.yaml"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {
            "initContainers": [_container("vault-init", "VAULT_TOKEN", secret)],
            "containers": [{"name": "base"}],
        },
    }
    template.write_text(json.dumps(pod))
    op = _infer(pod_template_file=str(template))  # the file is read only when the task starts
    op.configure_pod_for(_infer_spec())
    text = _refusal(lambda: op.build_pod_request_obj(dry_run=True), secret)
    assert f"pod template {template} init container 'vault-init' env: VAULT_TOKEN" in text


def _infer_spec() -> JobSpec:
    return JobSpec(
        job="infer", inputs=["s3://d/in/"], mlflow=_ref(), model=ModelReference("m", "1"), output="s3://o/"
    )


def _ref():
    from airflow_ai_provider.runtime.contract.spec import MlflowRef

    return MlflowRef(tracking_uri="http://mlflow:5000", run_id="r1", experiment_id="7")


@pytest.mark.parametrize(
    ("env_vars", "message"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "{s}"}, "AWS_SECRET_ACCESS_KEY is given as a literal value"),
        ({"S3_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "NOTE": "{s}"}, "S3_KEY_ID is given as a literal value (its value looks like an AWS access key id)"),
        ({"DATABASE_URL": "postgresql://app:{s}@db/app"}, "DATABASE_URL is given as a literal value (its value looks like a URI with credentials)"),
        ({"SOURCE": "https://b.s3.amazonaws.com/k?X-Amz-Signature={s}"}, "SOURCE is given as a literal value (its value looks like a URI with credentials)"),
    ],
)  # fmt: skip
def test_literal_secret_in_env_vars_is_refused_by_name_or_by_value(env_vars, message, secret):
    text = _refusal(lambda: _infer(env_vars={k: v.format(s=secret) for k, v in env_vars.items()}), secret)
    assert text.startswith("score: env_vars: ") and message in text


def test_secrets_by_reference_and_innocent_values_are_accepted_in_every_container():
    ref = k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="s3", key="secret"))
    pod = _pod(init_containers=[k8s.V1Container(
        name="fetch",
        env=[k8s.V1EnvVar(name="AWS_SECRET_ACCESS_KEY", value_from=ref),
             k8s.V1EnvVar(name="REPO", value="git+ssh://git@github.com/org/repo"),
             k8s.V1EnvVar(name="AWS_ENDPOINT_URL_S3", value="http://minio.storage:9000")],
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="mlflow-credentials"))],
    )])  # fmt: skip
    op = _infer(full_pod_spec=pod)
    op.configure_pod_for(_infer_spec())
    manifest = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))
    assert manifest["spec"]["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "mlflow-credentials"}}]


# --- the runtime's own messages ---------------------------------------------------------------------


def test_runtime_error_messages_drop_uri_credentials(tmp_path, secret):
    """The real runtime CLI, given URIs with credentials directly (the operators refuse them first)."""
    spec = {
        "job": "infer",
        "inputs": [f"file://reader:{secret}@elsewhere/data/x.parquet"],
        "output": str(tmp_path / "out"),
        "model": {"name": "m", "version": "1"},
        "mlflow": {"tracking_uri": f"file://{tmp_path}/mlruns"},
    }
    result_path = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "airflow_ai_provider.runtime", "infer", "--spec-json", json.dumps(spec),
         "--result-path", str(result_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    result = json.loads(result_path.read_text())
    assert done.returncode == 2 and result["retryable"] is False
    assert "file://***@elsewhere/data/x.parquet" in result["error"]
    assert secret not in result["error"] and secret not in done.stderr


def test_literal_secret_in_a_dag_file_is_an_import_error_without_it(tmp_path, secret):
    from airflow.dag_processing.dagbag import DagBag

    dag_file = tmp_path / "leaky_dag.py"
    dag_file.write_text(
        "from airflow.sdk import DAG\n"
        "from airflow_ai_provider.operators.inference import BatchInferenceOperator\n"
        "with DAG('leaky', schedule=None):\n"
        f"    BatchInferenceOperator(task_id='score', model='churn@champion', output_uri='s3://d/out/',\n"
        f"                           input_uri='https://d.s3.amazonaws.com/x?X-Amz-Signature={secret}')\n"
    )
    errors = DagBag(dag_folder=str(dag_file)).import_errors
    (error,) = errors.values()  # what the UI shows (the DAG file's source itself holds the secret)
    assert "input_uri='https://d.s3.amazonaws.com/x' carries credentials" in error
    assert secret not in error


def test_a_failed_pods_last_log_lines_lose_uri_credentials_in_the_task_error(secret):
    from airflow_ai_provider.kubernetes.pod_failures import explain_pod_failure

    last_lines = f"Error: could not open https://svc:{secret}@files.example.com/model.bin?sig={secret}\n"
    pod = {
        "spec": {"containers": [{"name": "base", "image": "runtime:1"}]},
        "status": {"containerStatuses": [{"name": "base", "state": {"terminated": {
            "reason": "StartError", "exitCode": 128, "message": last_lines}}}]},
    }  # fmt: skip
    message, _ = explain_pod_failure(pod, "base")
    assert "https://files.example.com/model.bin" in message and secret not in message


def test_lineage_command_never_prints_the_password_of_its_tracking_uri(capsys, monkeypatch):
    from airflow_ai_provider import cli

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "2")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    code = cli.main(["lineage", "churn/1", "--tracking-uri", f"http://reader:{secret}@127.0.0.1:9"])

    output = capsys.readouterr()
    assert code != 0
    assert "127.0.0.1:9" in output.err
    assert secret not in output.err + output.out
    # The command's 2 s MLflow bounds held only while it ran: later MLflow calls keep their own.
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_secret_value_among_training_hyperparameters_is_refused_at_dag_parse():
    from airflow_ai_provider.exceptions import AiProviderConfigError
    from airflow_ai_provider.operators.training import RetrainModelOperator

    secret = "AKIA" + uuid.uuid4().hex[:16].upper()
    with pytest.raises(AiProviderConfigError, match=r"hyperparameters\['hub'\] looks like an AWS") as raised:
        RetrainModelOperator(
            task_id="train",
            training_function="pkg.mod:train",
            input_uri="/data/train",
            label_column="churned",
            model_name="churn",
            hyperparameters={"max_depth": 4, "hub": secret},
        )
    assert secret not in str(raised.value)
