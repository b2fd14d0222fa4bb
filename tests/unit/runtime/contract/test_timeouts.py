"""One ``service_timeout`` bounds every MLflow and S3 call: derivation, setting, hand-over, classification.

The hung-server behaviour itself (SIGSTOP) is proven in ``tests/integration/test_hung_services.py``;
these tests check the arithmetic and the plumbing with real clients but no server.
"""

from __future__ import annotations

import json
import os

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.timeouts import (
    DEFAULT_SERVICE_TIMEOUT,
    MLFLOW_HTTP_ENV,
    SERVICE_TIMEOUT_ENV,
    ServiceBounds,
    is_timeout,
    mlflow_unavailable,
    mlflow_wait,
    parse_seconds,
    process_bounds,
)


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*MLFLOW_HTTP_ENV, SERVICE_TIMEOUT_ENV, "AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("budget", [1, 2, 5, 9, 10, 11, 15, 20, 30, 60, 300])
def test_all_attempts_of_one_request_fit_in_the_budget(budget):
    bounds = ServiceBounds(budget)
    assert bounds.mlflow_worst_case <= budget
    assert bounds.s3_worst_case <= budget
    assert mlflow_wait(bounds.mlflow_env()) == bounds.mlflow_worst_case
    assert 1 <= bounds.connect_timeout <= min(5, bounds.s3_timeout)


def test_default_budget_gives_two_attempts_of_ten_seconds_to_mlflow_and_nine_to_s3():
    bounds = ServiceBounds()
    assert bounds.budget == DEFAULT_SERVICE_TIMEOUT == 20
    assert (bounds.attempts, bounds.mlflow_timeout, bounds.s3_timeout, bounds.connect_timeout) == (
        2,
        10,
        9,
        5,
    )
    assert bounds.mlflow_env() == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
        "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
    }


def test_a_small_budget_gets_one_attempt():
    assert (ServiceBounds(5).attempts, ServiceBounds(5).mlflow_timeout) == (1, 5)


@pytest.mark.parametrize(("text", "seconds"), [("20", 20), (" 7 ", 7), ("2.5", 3), ("1", 1)])
def test_budget_is_whole_seconds_rounded_up(text, seconds):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["0", "-3", "0.5", "abc", "", "nan", "inf"])
def test_budget_that_is_not_a_positive_number_of_seconds_is_refused(text):
    with pytest.raises(ValueError, match="expected a number of seconds"):
        parse_seconds(text)


def test_airflow_setting_is_read_and_a_bad_one_fails_the_task_naming_it(clean_env):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_ai_provider.config import service_timeout

    assert service_timeout() == DEFAULT_SERVICE_TIMEOUT
    clean_env.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "45")
    assert service_timeout() == 45
    clean_env.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "soon")
    with pytest.raises(AirflowFailException, match=r"^invalid \[ai_provider\] service_timeout .*'soon'"):
        service_timeout()


def test_runtime_bad_budget_is_bad_input_naming_the_variable(clean_env):
    clean_env.setenv(SERVICE_TIMEOUT_ENV, "-1")
    with pytest.raises(JobInputError, match=rf"^invalid {SERVICE_TIMEOUT_ENV} '-1'"):
        process_bounds()


def test_runtime_derives_mlflow_settings_and_an_explicit_variable_wins(clean_env):
    from airflow_ai_provider.runtime.tracking import set_process_defaults

    clean_env.setenv(SERVICE_TIMEOUT_ENV, "12")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    set_process_defaults()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "6"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # the user's own setting
    assert mlflow_wait() == 6


def test_runtime_s3_clients_use_the_derived_timeouts(clean_env):
    from airflow_ai_provider.runtime import storage

    clean_env.setenv(SERVICE_TIMEOUT_ENV, "30")
    clean_env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage.s3_client.cache_clear()
    storage.s3_filesystem.cache_clear()
    try:
        config = storage.s3_client().meta.config
        assert (config.connect_timeout, config.read_timeout) == (5, 14)
        assert config.retries == {"total_max_attempts": 2, "mode": "standard"}
        assert storage.s3_filesystem().region == "us-east-1"
    finally:
        storage.s3_client.cache_clear()
        storage.s3_filesystem.cache_clear()


def test_timeouts_are_told_apart_from_refused_connections():
    import requests

    class ReadTimeoutError(Exception):
        pass

    assert is_timeout(TimeoutError("x"))
    assert is_timeout(requests.exceptions.ReadTimeout("HTTPConnectionPool: Read timed out."))
    assert is_timeout(ReadTimeoutError("Read timeout on endpoint URL"))
    assert is_timeout(
        OSError("AWS Error NETWORK_CONNECTION during HeadObject: curlCode: 28, Timeout was reached")
    )
    wrapped = RuntimeError("API request failed")
    wrapped.__cause__ = TimeoutError()
    assert is_timeout(wrapped)
    assert not is_timeout(ConnectionRefusedError("[Errno 111] Connection refused"))
    assert not is_timeout(OSError("curlCode: 7, Couldn't connect to server"))


def test_runtime_mlflow_error_names_the_uri_and_the_wait_and_is_retryable(clean_env):
    clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "4")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    err = mlflow_unavailable(
        "cannot look up model 'churn'", "http://mlflow:5000", TimeoutError("Read timed out")
    )
    assert str(err) == (
        "cannot look up model 'churn': MLflow at http://mlflow:5000 did not answer within 8 s "
        f"(see {SERVICE_TIMEOUT_ENV}): Read timed out"
    )
    assert err.retryable
    refused = mlflow_unavailable("x", "http://mlflow:5000", ConnectionRefusedError("Connection refused"))
    assert str(refused) == "x: MLflow at http://mlflow:5000 failed: Connection refused"


# --- the worker side -------------------------------------------------------------------------------


def test_hook_hands_the_budget_to_the_runtime_not_mlflow_settings(clean_env):
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    clean_env.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "8")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    env = MlflowHook().runtime_env()
    assert env[SERVICE_TIMEOUT_ENV] == "8"
    assert not set(env) & set(MLFLOW_HTTP_ENV)


def test_hook_bounds_each_call_and_restores_the_environment(clean_env, tmp_path):
    from airflow_ai_provider.hooks.mlflow import FAILURE_PATH_TIMEOUT, MlflowHook

    clean_env.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "30")
    clean_env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    clean_env.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "3")
    hook = MlflowHook()
    with hook.client():
        seen = {name: os.environ.get(name) for name in MLFLOW_HTTP_ENV}
    with hook.client(on_failure=True):
        on_failure = (
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"],
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"],
        )
    assert seen["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
    assert seen["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert seen["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "3"  # the user's own setting
    assert on_failure == (str(FAILURE_PATH_TIMEOUT), "0")
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_pod_gets_the_configured_service_timeout(clean_env):
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from kubernetes.client import ApiClient

    from airflow_ai_provider.operators.inference import BatchInferenceOperator
    from airflow_ai_provider.runtime.contract.spec import JobSpec

    clean_env.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "12")
    op = BatchInferenceOperator(
        task_id="score", model="churn@champion", input_uri="s3://b/in", output_uri="s3://b/out",
        execution_mode="kubernetes",
    )  # fmt: skip
    op.configure_pod_for(
        JobSpec.from_dict(
            {
                "job": "infer",
                "model": {"name": "churn", "version": "3"},
                "inputs": ["s3://b/in"],
                "output": "s3://b/out",
                "mlflow": {"tracking_uri": "http://mlflow:5000"},
            }
        )
    )
    ti = SimpleNamespace(dag_id="d", task_id="score", run_id="r", try_number=1, map_index=-1)
    context = {"ti": ti, "run_id": "r", "dag": SimpleNamespace(), "logical_date": datetime.now(timezone.utc)}
    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env[SERVICE_TIMEOUT_ENV] == "12"
    assert json.loads(json.dumps(env))  # plain values only, no secret among them
