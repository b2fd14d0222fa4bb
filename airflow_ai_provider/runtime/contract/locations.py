"""Storage locations both planes read alike: file:// and s3:// URIs, and S3 settings from environment variables.

The runtime reads the S3 settings from its own environment; the control plane from the worker's
environment with an Airflow AWS connection's variables over it (the environment a local runtime
gets). Both derive pyarrow's ``S3FileSystem`` keyword arguments here, so the worker's own storage
calls reach the same endpoint, in the same region, with the same time bounds as the runtime.

Light by design: no pyarrow at import (only :meth:`ServiceBounds.pyarrow_s3_options` imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from airflow_ai_provider.runtime.contract.errors import JobInputError, error_chain
from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds

#: Text in a pyarrow error that means the store did not answer, or answered "not now" (throttled,
#: unavailable, a server error): worth a retry, unlike a refused request.
UNREACHABLE_MARKERS = (
    "NETWORK_CONNECTION",
    "Couldn't connect",
    "curlCode",
    "Connection refused",
    "timed out",
    "SLOW_DOWN",
    "SERVICE_UNAVAILABLE",
    "THROTTLING",
    "INTERNAL_FAILURE",
    "REQUEST_TIMEOUT",
    "HTTP status 500",
    "HTTP status 502",
    "HTTP status 503",
    "HTTP status 504",
)
DEFAULT_REGION = "us-east-1"


def split_uri(uri: str) -> tuple[str, str]:
    """``(scheme, path)`` of ``file:///abs``, ``/abs``, ``relative`` or ``s3://bucket/key``.

    The scheme is ``"file"`` (an absolute local path) or ``"s3"`` (``bucket/key``, no slash at
    either end).

    :raises JobInputError: an S3 URI without a bucket, a ``file://`` URI with a host, another scheme.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise JobInputError(f"S3 URI has no bucket: {uri}")
        return "s3", f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise JobInputError(f"file URI must be absolute (file:///path): {uri}")
        return "file", os.path.abspath(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise JobInputError(f"unsupported URI scheme {parsed.scheme!r} in {uri}: use file:// or s3://")
    return "file", os.path.abspath(uri)


def join_uri(scheme: str, path: str) -> str:
    """The URI of a ``(scheme, path)`` pair from :func:`split_uri`."""
    return f"s3://{path}" if scheme == "s3" else f"file://{path}"


def s3_endpoint(environ: Mapping[str, str]) -> str | None:
    """The S3 endpoint URL in ``environ``, or ``None`` for AWS itself."""
    return environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None


def s3_region(environ: Mapping[str, str]) -> str:
    """The S3 region in ``environ`` (default :data:`DEFAULT_REGION`)."""
    return environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION") or DEFAULT_REGION


def s3_filesystem_options(environ: Mapping[str, str], bounds: ServiceBounds) -> dict[str, object]:
    """Keyword arguments of ``pyarrow.fs.S3FileSystem`` for the settings in ``environ``.

    Region, endpoint (``scheme`` and ``endpoint_override``), timeouts and attempts within
    ``bounds``; the access key, secret key and session token when ``environ`` has a key pair (the
    first source of AWS's default credential chain), else nothing, and the chain decides.
    """
    options: dict[str, object] = {"region": s3_region(environ), **bounds.pyarrow_s3_options()}
    endpoint = s3_endpoint(environ)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(scheme=parsed.scheme, endpoint_override=parsed.netloc)
    access_key, secret_key = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key and secret_key:
        options.update(access_key=access_key, secret_key=secret_key)
        if environ.get("AWS_SESSION_TOKEN"):
            options["session_token"] = environ["AWS_SESSION_TOKEN"]
    return options


def is_unreachable(err: BaseException) -> bool:
    """Whether a storage error (or one it was raised from) means the store did not answer or asked to
    be tried again later (throttling, unavailable, a server error)."""
    texts = [" ".join(str(seen).split()) for seen in error_chain(err)]
    return any(marker in text for text in texts for marker in UNREACHABLE_MARKERS)
