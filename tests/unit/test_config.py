"""Execution mode selection: config default, environment override, operator argument, bad values."""

from __future__ import annotations

import pytest

from airflow_ai_provider.config import ExecutionMode, default_execution_mode
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.inference import BatchInferenceOperator


def _operator(**kwargs):
    return BatchInferenceOperator(
        task_id="score", model="churn@champion", input_uri="/data/in", output_uri="/data/out", **kwargs
    )


def test_default_mode_is_local_out_of_the_box():
    assert default_execution_mode() is ExecutionMode.LOCAL
    assert _operator().resolved_execution_mode is ExecutionMode.LOCAL


def test_environment_switches_default_to_kubernetes(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "kubernetes")
    assert _operator().resolved_execution_mode is ExecutionMode.KUBERNETES


def test_operator_argument_beats_config(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "kubernetes")
    assert _operator(execution_mode="LOCAL").resolved_execution_mode is ExecutionMode.LOCAL


def test_invalid_config_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "k8s")
    with pytest.raises(
        AiProviderConfigError, match=r"AIRFLOW__AI_PROVIDER__EXECUTION_MODE.*local, kubernetes"
    ):
        default_execution_mode()


def test_invalid_operator_mode_fails_at_dag_parse():
    with pytest.raises(AiProviderConfigError, match=r"invalid execution_mode 'docker'"):
        _operator(execution_mode="docker")


def test_templated_mode_is_checked_when_the_task_runs():
    op = _operator(execution_mode="{{ params.mode }}")
    op.execution_mode = "cloud"  # what rendering produced
    with pytest.raises(AiProviderConfigError, match="invalid execution_mode 'cloud'"):
        _ = op.resolved_execution_mode


def test_warm_runtime_is_on_by_default_and_turned_off_by_its_option(monkeypatch):
    from airflow_ai_provider.config import warm_runtime_enabled, warm_runtime_idle_seconds

    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", raising=False)
    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME_IDLE_SECONDS", raising=False)
    assert warm_runtime_enabled() is True
    assert warm_runtime_idle_seconds() == 600
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", "False")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME_IDLE_SECONDS", "30")
    assert warm_runtime_enabled() is False
    assert warm_runtime_idle_seconds() == 30


def test_invalid_warm_runtime_values_name_the_option_and_what_to_use(monkeypatch):
    from airflow_ai_provider.config import warm_runtime_enabled, warm_runtime_idle_seconds

    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME", "sometimes")
    with pytest.raises(
        AiProviderConfigError, match=r"AIRFLOW__AI_PROVIDER__WARM_RUNTIME\) 'sometimes': use True or False"
    ):
        warm_runtime_enabled()
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__WARM_RUNTIME_IDLE_SECONDS", "soon")
    with pytest.raises(
        AiProviderConfigError, match=r"warm_runtime_idle_seconds .*'soon': expected a number of seconds"
    ):
        warm_runtime_idle_seconds()
