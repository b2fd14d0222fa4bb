"""The DAG templates: they load with no import errors and no network or database use, chain by Assets,
keep their use case in the config blocks, and offer a trigger form that marks no defaulted param required."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

TEMPLATES = {"churn_ingest", "churn_retrain", "churn_batch_inference", "churn_drift_monitor"}

# Parse the templates in a fresh interpreter where any socket connection raises and the metadata
# database points at a path that cannot exist: a template that touches either fails to load.
_PARSE = """
import json, socket, sys
def _no_network(*args, **kwargs):
    raise RuntimeError("network access at DAG parse time")
socket.socket.connect = _no_network
socket.create_connection = _no_network
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
print(json.dumps({"dags": sorted(bag.dags), "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


def test_templates_load_without_errors_network_or_database(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO_ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, str(REPO_ROOT / "dag_templates")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == TEMPLATES


def test_chained_templates_share_their_assets():
    from dag_templates import churn_batch_inference, churn_drift_monitor, churn_ingest, churn_retrain

    assert churn_ingest.VALIDATED_DATA == churn_retrain.VALIDATED_DATA
    retrain_assets = {asset.uri for asset in churn_retrain.dag.timetable.asset_condition.objects}
    assert churn_ingest.VALIDATED_DATA.uri in retrain_assets
    drift = churn_drift_monitor.dag.get_task("detect_drift").drift_asset
    assert drift.uri in retrain_assets
    inference_assets = {asset.uri for asset in churn_batch_inference.dag.timetable.asset_condition.objects}
    assert "mlflow-model://churn" in inference_assets
    announce = churn_retrain.dag.get_task("announce")
    assert [outlet.uri for outlet in announce.outlets] == ["mlflow-model://churn"]


def _shown_required(schema: dict) -> bool:
    """The Airflow UI trigger form's rule: a param is required unless its schema type allows null."""
    kind = schema.get("type")
    return bool(kind) and (not isinstance(kind, list) or "null" not in kind)


def test_params_with_defaults_are_not_marked_required_in_the_trigger_form():
    from dag_templates import churn_batch_inference, churn_drift_monitor, churn_ingest, churn_retrain

    for module in (churn_batch_inference, churn_drift_monitor, churn_ingest, churn_retrain):
        assert module.dag.params, module.dag.dag_id
        for name in module.dag.params:
            param = module.dag.params.get_param(name).dump()  # what the API hands the trigger form
            assert param["value"] is not None, (module.dag.dag_id, name)
            assert not _shown_required(param["schema"]), (module.dag.dag_id, name, param["schema"])


def _outside_config_block(source: str) -> str:
    """A template's source without its config block (from ``# ---- Config`` to the closing rule)."""
    start = source.index("# ---- Config")
    end = source.index("# ------", start + len("# ---- Config"))
    return source[:start] + source[end:]


def test_no_use_case_text_outside_the_config_blocks():
    for name in sorted(TEMPLATES):
        rest = _outside_config_block((REPO_ROOT / "dag_templates" / f"{name}.py").read_text())
        lines = [line for line in rest.splitlines() if "churn" in line.lower()]
        assert lines == [], name


def test_quality_gate_thresholds_follow_the_task_type():
    from tests.dags.adapted_template_dags import adapted_template

    classifier = adapted_template("churn_retrain", {}).get_task("quality_gate")
    assert classifier.model_task_type == "classification"
    assert set(classifier.min_metrics) == set(classifier.max_degradation) == {"accuracy"}

    dag = adapted_template("churn_retrain", {"DAG_ID": '"diabetes_retrain"', "TASK_TYPE": '"regression"'})
    gate = dag.get_task("quality_gate")
    assert gate.model_task_type == "regression"
    assert set(gate.min_metrics) == set(gate.max_degradation) == {"r2"}
    assert {"min_r2", "max_r2_drop"} <= set(dag.params)
    assert "min_accuracy" not in dag.params
