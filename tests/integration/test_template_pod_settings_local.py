"""Local mode ignores the templates' kubernetes settings: a template parsed with an image, a Secret, a
ConfigMap and a service account configured still runs its AI job as a local subprocess, with
``dag.test()`` against a real ``mlflow server``, and succeeds."""

from __future__ import annotations

from tests._support.airflow_records import task_tries
from tests.conftest import REPO_ROOT


def test_ingest_template_with_kubernetes_settings_runs_its_validation_locally(
    mlflow_connection, aws_connection, tmp_path, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    from airflow_ai_provider.config import ExecutionMode
    from tests._support.churn_sample import write_customers

    settings = {
        "AI_TEMPLATES_IMAGE": "registry.invalid/no-such-runtime:0",  # a pod could never pull it
        "AI_TEMPLATES_S3_SECRET": "no-such-secret",
        "AI_TEMPLATES_RUNTIME_CONFIGMAP": "no-such-configmap",
        "AI_TEMPLATES_SERVICE_ACCOUNT": "no-such-account",
        "AI_TEMPLATES_MLFLOW_CONN_ID": "mlflow_default",
        "AI_TEMPLATES_AWS_CONN_ID": aws_connection,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIRFLOW__AI_PROVIDER__EXECUTION_MODE", raising=False)
    bag = DagBag(str(REPO_ROOT / "dag_templates" / "churn_ingest.py"))  # parsed with the settings above
    assert bag.import_errors == {}
    dag = bag.dags["churn_ingest"]
    validate = dag.get_task("validate")
    assert validate.image == settings["AI_TEMPLATES_IMAGE"]
    assert validate.service_account_name == settings["AI_TEMPLATES_SERVICE_ACCOUNT"]
    assert len(validate.env_from) == 2
    assert validate.resolved_execution_mode is ExecutionMode.LOCAL

    landing = tmp_path / "landing"
    write_customers(str(landing), 500, seed=5, with_label=True)
    dag_run = dag.test(run_conf={"landing": str(landing)})

    assert dag_run.state == "success"
    assert task_tries(dag_run.run_id, "validate") == [1]
