"""The DAG templates: they load with no import errors and no network or database use, chain by Assets,
keep their use case in the config blocks, and offer a trigger form that marks no defaulted param required."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

TEMPLATES = {
    "churn_ingest",
    "churn_retrain",
    "churn_batch_inference",
    "churn_drift_monitor",
    "content_embedder_train",
    "content_reembed",
}
USE_CASE_WORDS = {"churn": ("churn",), "content": ("text_embedder", "doc_id")}

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
    import importlib

    for module in (importlib.import_module(f"dag_templates.{name}") for name in sorted(TEMPLATES)):
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
        words = USE_CASE_WORDS[name.split("_", 1)[0]]
        lines = [line for line in rest.splitlines() if any(word in line.lower() for word in words)]
        assert lines == [], name


def test_content_reembed_runs_on_new_content_or_a_new_embedding_model_the_training_announces():
    from airflow.sdk import AssetAny

    from dag_templates import content_embedder_train, content_reembed

    condition = content_reembed.dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [asset.uri for asset in condition.objects] == [
        content_reembed.CONTENT.uri,
        "mlflow-model://text_embedder",
    ]
    promote = content_embedder_train.dag.get_task("promote")
    assert [outlet.uri for outlet in promote.outlets] == ["mlflow-model://text_embedder"]
    assert content_reembed.CONTENT.uri == content_embedder_train.CORPUS
    publish = content_reembed.dag.get_task("publish")
    assert [outlet.name for outlet in publish.outlets] == ["content_vectors"]
    assert [inlet.name for inlet in content_reembed.dag.get_task("find_previous").inlets] == [
        "content_vectors"
    ]


def test_content_reembed_embeds_with_its_config_block():
    from dag_templates import content_reembed

    embed = content_reembed.dag.get_task("embed")
    assert embed.id_columns == ["doc_id"] and embed.content_columns == ["text"]
    assert embed.output_columns == ["embedding"] and embed.vector_index == "embedding"
    assert embed.previous_output == "{{ ti.xcom_pull(task_ids='find_previous') }}"
    assert embed.output_uri.startswith(content_reembed.VECTORS.uri + "/{{ run_id")
    assert content_reembed.dag.max_active_runs == 1  # each run reuses the previous run's output


def test_content_templates_follow_an_s3_data_root():
    from tests.dags.adapted_template_dags import adapted_template

    root = '"s3://bucket/content"'
    reembed = adapted_template("content_reembed", {"DAG_ID": '"s3_content_reembed"', "DATA_ROOT": root})
    assert reembed.get_task("embed").output_uri.startswith("s3://bucket/content/vectors/")
    assert {asset.uri for asset in reembed.timetable.asset_condition.objects} >= {
        "s3://bucket/content/content/documents"
    }
    train = adapted_template(
        "content_embedder_train", {"DAG_ID": '"s3_content_embedder_train"', "DATA_ROOT": root}
    )
    assert "s3://bucket/content/content/documents" in train.get_task("train").input_uri


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
