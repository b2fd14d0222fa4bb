"""S3 access for the runtime: an allow-list of environment variables from an Airflow AWS connection."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_ai_provider.credentials import connection_env, mask_credentials, split_credentials
from airflow_ai_provider.exceptions import AiProviderConfigError

#: The AWS connection's fields a runtime receives, and the variables boto3 and pyarrow read them from.
_CONNECTION_ENV = {
    "login": "AWS_ACCESS_KEY_ID",
    "password": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "region_name": "AWS_DEFAULT_REGION",
}


def aws_runtime_env(aws_conn_id: str | None) -> dict[str, str]:
    """Environment variables that give a local runtime access to S3.

    Reads an allow-list from an ``aws`` connection: access key (login), secret key (password), and
    extras ``aws_session_token``, ``region_name`` and ``endpoint_url`` (also accepted as
    ``service_config.s3.endpoint_url``, for MinIO or other S3-compatible stores). With no connection
    id the runtime inherits the worker's own AWS environment (instance role, IRSA, env vars).
    """
    if not aws_conn_id:
        return {}
    try:
        conn = BaseHook.get_connection(aws_conn_id)
    except AirflowNotFoundException:
        raise AiProviderConfigError(
            f"aws_conn_id {aws_conn_id!r}: no such Airflow connection; create it (type aws) or leave "
            "aws_conn_id unset to use the worker's own AWS credentials"
        ) from None
    extra = conn.extra_dejson
    env = connection_env(conn, _CONNECTION_ENV)
    endpoint = extra.get("endpoint_url") or extra.get("service_config", {}).get("s3", {}).get("endpoint_url")
    if endpoint:
        clean, found = split_credentials(str(endpoint))
        if found:
            mask_credentials(found)
            raise AiProviderConfigError(
                f"aws_conn_id {aws_conn_id!r}: endpoint_url {clean!r} carries credentials "
                f"({found.describe()}); put the access key in the login and the secret key in the password"
            )
        env["AWS_ENDPOINT_URL_S3"] = clean
    mask_credentials([env.get("AWS_SECRET_ACCESS_KEY", ""), env.get("AWS_SESSION_TOKEN", "")])
    return env
