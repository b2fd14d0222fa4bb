"""The arguments every AI operator of a DAG shares where it is deployed: image, credentials by reference.

A DAG file's config block names the runtime image, the Kubernetes Secret and ConfigMap its pods read
their S3 settings from, the pods' service account and the MLflow and AWS connections;
:func:`ai_job_arguments` turns those values into the keyword arguments of its AI operators, so each
operator gets them with one ``**`` and no DAG file repeats the conversion::

    AI_JOBS = ai_job_arguments(image=IMAGE, s3_secret=S3_SECRET, ...)
    BatchInferenceOperator(task_id="score", ..., **AI_JOBS)

Credentials only ever travel by reference: the Secret and ConfigMap by name (``env_from``), the
service account by name (IRSA, Workload Identity). In local mode the pod arguments are ignored and
the runtime gets S3 access from ``aws_conn_id`` (which, in kubernetes mode, is never copied into pods).
"""

from __future__ import annotations

import re
from typing import Any

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.hooks.mlflow import MlflowHook

__all__ = ["ai_job_arguments"]

# A Kubernetes object name (RFC 1123 subdomain): what Secrets, ConfigMaps and service accounts take.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _set(value: str | None) -> str | None:
    """``value`` without surrounding blanks; an empty value (an env variable set to "") is unset."""
    text = (value or "").strip()
    return text or None


def _object_name(value: str | None, argument: str, kind: str) -> str | None:
    """``value`` checked as the name of a Kubernetes ``kind`` (refused in one line, at DAG parse)."""
    name = _set(value)
    if name is not None and (len(name) > 253 or not _OBJECT_NAME.match(name)):
        raise AiProviderConfigError(
            f"{argument}={name!r} is not a Kubernetes {kind} name: use lowercase letters, digits, '-' "
            "and '.', starting and ending with a letter or digit (e.g. 's3-credentials')"
        )
    return name


def ai_job_arguments(
    *,
    image: str | None = None,
    s3_secret: str | None = None,
    runtime_configmap: str | None = None,
    service_account: str | None = None,
    mlflow_conn_id: str | None = None,
    aws_conn_id: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for every AI operator of a DAG, from the values of its config block.

    Each value may be ``None`` or empty (unset); only the arguments that are set are returned, so an
    unconfigured DAG builds the same pods as operators given none of them.

    :param image: the runtime image with the model's code (``image=``); unset:
        ``[ai_provider] runtime_image``.
    :param s3_secret: a Kubernetes Secret whose keys (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``)
        become the pod's variables by reference (``env_from`` ``secretRef``).
    :param runtime_configmap: a ConfigMap (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ...) given the
        same way (``env_from`` ``configMapRef``).
    :param service_account: the pods' service account (``service_account_name=``), e.g. one bound to
        a cloud role; unset: the namespace's default.
    :param mlflow_conn_id: the MLflow connection (``mlflow_conn_id=``); unset: ``mlflow_default``.
    :param aws_conn_id: the AWS connection of local runtimes (``aws_conn_id=``); unset: the worker's
        own AWS environment. Never copied into pods.
    :raises AiProviderConfigError: a Secret, ConfigMap or service account name Kubernetes would refuse.
    """
    from kubernetes.client import models as k8s

    secret = _object_name(s3_secret, "s3_secret", "Secret")
    configmap = _object_name(runtime_configmap, "runtime_configmap", "ConfigMap")
    account = _object_name(service_account, "service_account", "service account")
    arguments: dict[str, Any] = {"mlflow_conn_id": _set(mlflow_conn_id) or MlflowHook.default_conn_name}
    if _set(aws_conn_id):
        arguments["aws_conn_id"] = _set(aws_conn_id)
    if _set(image):
        arguments["image"] = _set(image)
    env_from = []
    if secret:
        env_from.append(k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=secret)))
    if configmap:
        env_from.append(k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name=configmap)))
    if env_from:
        arguments["env_from"] = env_from
    if account:
        arguments["service_account_name"] = account
    return arguments
