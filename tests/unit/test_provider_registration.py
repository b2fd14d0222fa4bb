"""The provider is found by Airflow through its entry point, with its connection type and config."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path


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
