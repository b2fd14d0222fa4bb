"""The provider is found by Airflow through its entry point, with its connection type, config and exports."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest


def test_entry_point_points_at_provider_info():
    (entry,) = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_ai")
    ]
    info = entry.load()()
    assert info["package-name"] == "airflow-ai-provider"
    assert info["connection-types"][0]["connection-type"] == "mlflow"


def test_providers_manager_registers_mlflow_connection_with_labels():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-ai-provider" in manager.providers
    hook = ProvidersManagerTaskRuntime().hooks["mlflow"]
    assert hook is not None and hook.hook_class_name == "airflow_ai_provider.hooks.mlflow.MlflowHook"
    behaviour = manager.field_behaviours["mlflow"]
    assert behaviour["relabeling"]["host"] == "Tracking URI"
    assert "port" in behaviour["hidden_fields"]
    widgets = manager.connection_form_widgets
    assert widgets["extra__mlflow__registry_uri"].field["schema"]["title"] == "Model registry URI"
    assert widgets["extra__mlflow__token"].is_sensitive


def test_the_landing_watcher_is_registered_as_the_providers_trigger():
    from airflow.providers_manager import ProvidersManager

    triggers = {info.trigger_class_name for info in ProvidersManager().trigger}
    assert "airflow_ai_provider.triggers.landed_files" in triggers


def test_airflow_cli_lists_the_provider_and_its_config_default():
    airflow = str(Path(sys.executable).parent / "airflow")
    listed = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, check=True)
    assert "airflow-ai-provider" in listed.stdout
    value = subprocess.run(
        [airflow, "config", "get-value", "ai_provider", "execution_mode"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert value.stdout.strip() == "local"


def test_the_quality_gate_is_exported_under_its_name_and_the_old_name_still_works_with_a_warning():
    from airflow_ai_provider import ModelValidationOperator, QualityGateOperator
    from airflow_ai_provider.exceptions import AiProviderConfigError

    arguments = {"challenger": "churn@challenger", "holdout_uri": "/in", "label_column": "churned"}
    gate = QualityGateOperator(task_id="gate", min_metrics={"accuracy": 0.75}, **arguments)
    with pytest.warns(
        DeprecationWarning, match=r"ModelValidationOperator is deprecated: use QualityGateOperator"
    ) as warned:
        old = ModelValidationOperator(task_id="gate", min_metrics={"accuracy": 0.75}, **arguments)
    assert warned[0].filename == __file__, "the warning points at the DAG file that uses the old name"
    assert isinstance(old, QualityGateOperator)
    assert (old.job_type, old.job_params()) == (gate.job_type, gate.job_params())
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(AiProviderConfigError, match="max_metrics names metric"),
    ):
        ModelValidationOperator(task_id="gate", max_metrics={"acc": 1}, **arguments)


def test_every_operator_and_hook_module_the_provider_lists_exists():
    import importlib

    from airflow_ai_provider.get_provider_info import get_provider_info

    info = get_provider_info()
    modules = [
        module
        for group in ("operators", "hooks")
        for entry in info[group]
        for module in entry["python-modules"]
    ]
    assert "airflow_ai_provider.operators.quality_gate" in modules
    for module in modules:
        importlib.import_module(module)
