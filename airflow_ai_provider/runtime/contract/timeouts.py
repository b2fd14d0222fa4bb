"""Time bounds of the calls to MLflow and object storage, all derived from one per-try budget.

The budget (``service_timeout``, seconds) is how long one try may wait on an MLflow or S3 endpoint
that accepts connections but does not answer. The control plane reads it from ``[ai_provider]
service_timeout`` and hands it to the runtime as ``AI_PROVIDER_SERVICE_TIMEOUT``. Each client gets
a per-request timeout and a number of attempts such that all attempts of one request, with their
back-off, fit in the budget:

* MLflow (``requests``/urllib3): ``attempts * timeout <= budget``. urllib3 waits nothing before the
  first retry, and the ``Retry-After`` header is not honoured (it could ask for minutes).
* S3 (pyarrow and boto3): ``attempts * timeout + 1 s <= budget``; the second attempt waits at most
  1 s (botocore's standard mode) or 50 ms (the AWS C++ SDK).

A budget under 10 s gets one attempt per request, from 10 s on two. The timeout bounds each wait
for the connection and each wait for bytes of the answer; a request that keeps trickling bytes is
not cut short.

Light by design: the control plane imports it (no Airflow, no MLflow, no boto3 here).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from airflow_ai_provider.runtime.contract import SERVICE_TIMEOUT_ENV
from airflow_ai_provider.runtime.contract.errors import JobInputError, JobServiceError, error_chain, one_line

DEFAULT_SERVICE_TIMEOUT = 20
#: From this budget on, each request gets a second attempt (a retry of a dropped connection).
RETRY_FROM = 10
#: Longest wait before the second S3 attempt (botocore standard mode, throttling scale).
S3_RETRY_BACKOFF = 1
#: Upper bound of the connect timeout: a live endpoint accepts within milliseconds.
MAX_CONNECT_TIMEOUT = 5
#: MLflow variables derived from the budget; one the environment already sets is left alone.
MLFLOW_HTTP_ENV = (
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER",
)
#: MLflow error codes of a server that is overloaded or failing: retryable.
MLFLOW_SERVICE_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "INTERNAL_ERROR"}
)
#: MLflow error codes that mean the credentials are wrong or lack a permission: never retryable.
MLFLOW_ACCESS_CODES = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
_TIMEOUT_MARKERS = (
    "timed out",
    "read timeout",
    "connect timeout",
    "timeout exception",
    "timeout was reached",
    "curlcode: 28",
)


def parse_seconds(value: object) -> int:
    """A budget in whole seconds (at least 1) from a setting's text; ``ValueError`` says why not.

    Whole seconds because MLflow reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` as an integer; a fraction is
    rounded up.
    """
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ValueError("expected a number of seconds, e.g. 20") from None
    if not math.isfinite(seconds) or seconds < 1:
        raise ValueError("expected a number of seconds of at least 1, e.g. 20")
    return math.ceil(seconds)


@dataclass(frozen=True)
class ServiceBounds:
    """Per-request timeouts and attempts for MLflow and S3 that fit in ``budget`` seconds.

    :param budget: seconds one try may wait on an endpoint that does not answer.
    """

    budget: int = DEFAULT_SERVICE_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceBounds:
        """The bounds for ``$AI_PROVIDER_SERVICE_TIMEOUT`` (default :data:`DEFAULT_SERVICE_TIMEOUT`).

        :raises ValueError: the variable is set but not a number of seconds of at least 1.
        """
        raw = (os.environ if environ is None else environ).get(SERVICE_TIMEOUT_ENV, "").strip()
        if not raw:
            return cls()
        try:
            return cls(parse_seconds(raw))
        except ValueError as err:
            raise ValueError(f"invalid {SERVICE_TIMEOUT_ENV} {raw!r}: {err}") from None

    @property
    def attempts(self) -> int:
        """Attempts per request: 1 below :data:`RETRY_FROM` seconds, else 2."""
        return 2 if self.budget >= RETRY_FROM else 1

    @property
    def mlflow_timeout(self) -> int:
        """MLflow's per-request timeout (connect, and each read of the answer)."""
        return max(1, self.budget // self.attempts)

    @property
    def s3_timeout(self) -> int:
        """pyarrow's ``request_timeout`` and boto3's ``read_timeout``."""
        return max(1, (self.budget - (self.attempts - 1) * S3_RETRY_BACKOFF) // self.attempts)

    @property
    def connect_timeout(self) -> int:
        """Connect timeout of S3 clients and of the tracking-server probe."""
        return min(MAX_CONNECT_TIMEOUT, self.s3_timeout)

    @property
    def mlflow_worst_case(self) -> int:
        """Longest one MLflow request can wait on a server that does not answer."""
        return self.attempts * self.mlflow_timeout

    @property
    def s3_worst_case(self) -> int:
        """Longest one S3 request can wait on an endpoint that does not answer."""
        return self.attempts * self.s3_timeout + (self.attempts - 1) * S3_RETRY_BACKOFF

    def mlflow_env(self) -> dict[str, str]:
        """MLflow's HTTP settings for these bounds (the names in :data:`MLFLOW_HTTP_ENV`)."""
        return {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.attempts - 1),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
            "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
        }

    def pyarrow_s3_options(self) -> dict[str, object]:
        """Keyword arguments of ``pyarrow.fs.S3FileSystem`` for these bounds."""
        import pyarrow.fs as pafs

        return {
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.s3_timeout,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.attempts),
        }

    def botocore_config(self) -> object:
        """A ``botocore.config.Config`` for these bounds (standard retry mode)."""
        from botocore.config import Config

        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.s3_timeout,
            retries={"total_max_attempts": self.attempts, "mode": "standard"},
        )


def is_timeout(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) is a connect or read timeout.

    Recognises ``requests``/urllib3 and botocore timeouts by class name, and pyarrow's and MLflow's
    wrapped errors by their text, without importing any of those libraries.
    """
    for seen in error_chain(err):
        if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
            return True
        text = str(seen).lower()
        if any(marker in text for marker in _TIMEOUT_MARKERS):
            return True
    return False


def process_bounds() -> ServiceBounds:
    """This process's bounds, from ``$AI_PROVIDER_SERVICE_TIMEOUT``; a bad value is bad input."""
    try:
        return ServiceBounds.from_env()
    except ValueError as err:
        raise JobInputError(str(err)) from None


def mlflow_wait(environ: Mapping[str, str] | None = None) -> int:
    """Longest wait of one MLflow request under the ``MLFLOW_HTTP_*`` values in effect (derived from
    the budget unless the environment set its own)."""
    env = os.environ if environ is None else environ
    try:
        timeout = int(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120"))
        retries = int(env.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7"))
    except ValueError:
        return process_bounds().mlflow_worst_case
    return (retries + 1) * timeout


def mlflow_unavailable(what: str, tracking_uri: str, err: BaseException) -> JobServiceError:
    """The retryable error for an MLflow server that refused, failed or did not answer in time."""
    return JobServiceError(f"{what}: MLflow at {tracking_uri} {failure_text(err, mlflow_wait())}")


def failure_text(err: BaseException, wait: int) -> str:
    """``did not answer within <wait> s: <err>`` for a timeout, else ``failed: <err>``, on one line."""
    if is_timeout(err):
        return f"did not answer within {wait} s (see {SERVICE_TIMEOUT_ENV}): {one_line(err)}"
    return f"failed: {one_line(err)}"
