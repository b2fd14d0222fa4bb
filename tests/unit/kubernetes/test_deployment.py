"""The shared arguments of a DAG's AI operators: only what is set, credentials by reference only."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiClient

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.kubernetes.deployment import ai_job_arguments


def _plain(arguments: dict) -> dict:
    return ApiClient().sanitize_for_serialization(arguments)


def test_unset_values_give_only_the_default_mlflow_connection():
    assert ai_job_arguments() == {"mlflow_conn_id": "mlflow_default"}
    blank = ai_job_arguments(
        image="", s3_secret=" ", runtime_configmap="", service_account="", mlflow_conn_id="", aws_conn_id=""
    )
    assert blank == {"mlflow_conn_id": "mlflow_default"}  # an env variable set to "" is unset


def test_secret_and_configmap_become_env_from_references_and_the_rest_operator_arguments():
    arguments = ai_job_arguments(
        image="registry.local/churn:2",
        s3_secret="s3-credentials",
        runtime_configmap="ai-runtime",
        service_account="ai-jobs",
        mlflow_conn_id="mlflow_k8s",
        aws_conn_id="aws_minio",
    )
    assert _plain(arguments) == {
        "image": "registry.local/churn:2",
        "env_from": [{"secretRef": {"name": "s3-credentials"}}, {"configMapRef": {"name": "ai-runtime"}}],
        "service_account_name": "ai-jobs",
        "mlflow_conn_id": "mlflow_k8s",
        "aws_conn_id": "aws_minio",
    }


def test_only_the_configmap_gives_one_env_from_entry():
    assert _plain(ai_job_arguments(runtime_configmap="ai-runtime"))["env_from"] == [
        {"configMapRef": {"name": "ai-runtime"}}
    ]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("s3_secret", "S3_Credentials"),
        ("runtime_configmap", "ai runtime"),
        ("service_account", "-jobs"),
        ("s3_secret", "a" * 254),
    ],
)
def test_a_name_kubernetes_would_refuse_is_refused_in_one_line_naming_it(argument, value):
    with pytest.raises(AiProviderConfigError) as raised:
        ai_job_arguments(**{argument: value})
    message = str(raised.value)
    assert message.startswith(f"{argument}=") and "\n" not in message
    assert "lowercase letters, digits" in message
