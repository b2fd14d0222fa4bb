"""An MLflow server that refuses the connection's credentials is bad configuration; one that is
overloaded is infrastructure. A loopback proxy in front of the session's real ``mlflow server``
answers the chosen requests with the status a server behind an authenticating gateway would send."""

from __future__ import annotations

import json
import os
import threading

import pytest

from tests._support.http_proxy import Rule, http_proxy


def _hook_for(url: str, monkeypatch):
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": url}))
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "5")
    return MlflowHook()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_bad_configuration_naming_the_connection(
    status, mlflow_server, airflow_db, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_ai_provider.exceptions import AiProviderConfigError

    rule = Rule("GET", "/experiments/get-by-name", "fail", status=status, times=10)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        hook = _hook_for(proxy.url, monkeypatch)
        with pytest.raises(AiProviderConfigError) as raised:
            hook.get_or_create_experiment("access-check")
    message = str(raised.value)
    assert isinstance(raised.value, AirflowFailException)  # never retried
    assert "refused the credentials of connection 'mlflow_default'" in message
    assert "\n" not in message


def test_an_overloaded_server_is_infrastructure_and_retried(mlflow_server, airflow_db, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_ai_provider.exceptions import MlflowUnavailableError

    rule = Rule("GET", "/experiments/get-by-name", "fail", status=503, times=10)
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        hook = _hook_for(proxy.url, monkeypatch)
        with pytest.raises(MlflowUnavailableError) as raised:
            hook.get_or_create_experiment("overload-check")
    assert not isinstance(raised.value, AirflowFailException)
    assert proxy.url in str(raised.value)


def test_get_conn_puts_credentials_in_the_environment_only_while_a_call_runs(
    mlflow_server, airflow_db, monkeypatch
):
    """The proxy holds the call's request, so the test reads ``os.environ`` while the call runs."""
    from airflow_ai_provider.hooks.mlflow import MlflowHook

    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    rule = Rule("POST", "/experiments/search", "hold", seconds=30)
    answers: list[object] = []
    with http_proxy(mlflow_server.url, [rule], lifetime=60) as proxy:
        conn = {"conn_type": "mlflow", "host": proxy.url, "login": "alice", "password": "pw-scoped-1"}
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
        client = MlflowHook().get_conn()
        before = {name: os.environ.get(name) for name in names}
        call = threading.Thread(target=lambda: answers.append(client.search_experiments(max_results=1)))
        call.start()
        assert rule.arrived.wait(30)
        during = {name: os.environ.get(name) for name in names}
        rule.release()
        call.join(30)
    assert before == {name: None for name in names}
    assert during == {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-scoped-1"}
    assert not call.is_alive() and len(answers) == 1  # the call went through and answered
    assert {name: os.environ.get(name) for name in names} == before
