"""OpenLineage events of the AI operators, captured by the OpenLineage provider's own listener and file
transport from real ``dag.test()`` runs (real ``mlflow server``, moto S3), and in kubernetes mode
against the loopback fake API server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests._support.churn_sample import train_and_register, write_customers
from tests.unit.operators.test_kubernetes_execution import fake_k8s  # noqa: F401 (a fixture)

ROWS = 4_000


@pytest.fixture
def lineage_events(monkeypatch, tmp_path):
    """The OpenLineage listener registered with a file transport; returns a reader of the task events.

    The provider reads its config once (``functools.cache``) and registers its listener only if
    enabled when plugins load, so the fixture clears the caches and registers the listener itself.
    """
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    from airflow.sdk.listener import get_listener_manager

    log_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(log_file), "append": True}
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "False")
    caches = [f for f in vars(conf).values() if hasattr(f, "cache_clear")]
    for cached in caches:
        cached.cache_clear()
    listener = get_openlineage_listener()
    listener.adapter._client = None
    manager = get_listener_manager()
    registered = not manager.pm.is_registered(listener)
    if registered:
        manager.add_listener(listener)

    def read(task_id: str, event_type: str = "COMPLETE") -> list[dict]:
        if not log_file.exists():
            return []
        events = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
        return [
            event
            for event in events
            if event.get("eventType") == event_type and event["job"]["name"].endswith(f".{task_id}")
        ]

    yield read
    if registered:
        manager.pm.unregister(listener)
    listener.adapter._client = None
    for cached in caches:
        cached.cache_clear()


def _run_facet(event: dict) -> dict:
    return event["run"]["facets"]["airflowAiProvider"]


def _s3_options(s3_server) -> dict:
    return {"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"}


def test_inference_events_carry_input_schema_digest_output_checksums_and_the_model_version(
    lineage_events, monkeypatch, mlflow_connection, aws_connection, mlflow_server, s3_server, s3_bucket
):
    from tests.dags.ai_test_dags import s3_batch_inference

    name = f"ol-churn-{uuid.uuid4().hex[:6]}"
    model = train_and_register(mlflow_server.url, name, alias="champion", n_rows=2_000)
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_SHARDS", "1")
    monkeypatch.setenv("AI_TEST_MODEL", f"{name}@champion")
    write_customers(
        f"s3://{s3_bucket}/scoring", ROWS, seed=7, n_files=2, storage_options=_s3_options(s3_server)
    )

    dag_run = s3_batch_inference().test()
    assert dag_run.state == "success"

    (event,) = lineage_events("score")
    files = [item for item in event["inputs"] if item["namespace"] == f"s3://{s3_bucket}"]
    assert [item["name"] for item in files] == ["scoring/"]
    fields = {field["name"]: field["type"] for field in files[0]["facets"]["schema"]["fields"]}
    assert "customer_id" in fields and "tenure_months" in fields
    assert len(files[0]["facets"]["version"]["datasetVersion"]) >= 16  # the input digest
    (model_input,) = [item for item in event["inputs"] if item["namespace"] == "mlflow-model"]
    assert model_input["name"] == name
    assert model_input["facets"]["version"]["datasetVersion"] == str(model["version"])
    (output,) = event["outputs"]
    assert output["namespace"] == f"s3://{s3_bucket}"
    assert output["name"] == f"predictions/{dag_run.run_id}/part-00000-of-00001.parquet"
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == ROWS
    assert output["outputFacets"]["outputStatistics"]["size"] > 0
    assert len(output["facets"]["version"]["datasetVersion"]) == 64  # the part file's SHA-256
    facet = _run_facet(event)
    assert facet["modelName"] == name and facet["modelVersion"] == str(model["version"])
    assert facet["modelAlias"] == "champion" and facet["executionMode"] == "local"
    assert facet["mlflowRunId"] and facet["mlflowParentRunId"] and facet["job"] == "infer"
    assert facet["mlflowExperimentName"] == "airflow/s3_batch_inference"


SUITE = Path(__file__).resolve().parents[2] / "dag_templates" / "include" / "churn_expectations.json"


def _validation_suite(monkeypatch, s3_server, s3_bucket: str) -> Path:
    """The churn suite where ``s3_data_validation`` reads it; returns the suite file."""
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    s3_server.client().put_object(
        Bucket=s3_bucket, Key="suites/churn_expectations.json", Body=SUITE.read_bytes()
    )
    return SUITE


def test_validation_events_carry_one_assertion_per_expectation_and_the_row_count(
    lineage_events, monkeypatch, mlflow_connection, aws_connection, mlflow_server, s3_server, s3_bucket
):
    from tests.dags.validation_dags import s3_data_validation

    suite = _validation_suite(monkeypatch, s3_server, s3_bucket)
    write_customers(
        f"s3://{s3_bucket}/customers", ROWS, seed=11, n_files=2, storage_options=_s3_options(s3_server)
    )

    dag_run = s3_data_validation().test()
    assert dag_run.state == "success"

    (event,) = lineage_events("validate")
    (data,) = event["inputs"]
    assert (data["namespace"], data["name"]) == (f"s3://{s3_bucket}", "customers/")
    expectations = json.loads(suite.read_text())["expectations"]
    assertions = data["facets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == len(expectations)
    assert all(item["success"] for item in assertions)
    assert {"customer_id"} <= {item.get("column") for item in assertions}
    assert data["inputFacets"]["dataQualityMetrics"]["rowCount"] == ROWS
    assert "customer_id" in {field["name"] for field in data["facets"]["schema"]["fields"]}
    assert _run_facet(event)["job"] == "validate" and _run_facet(event)["mlflowRunId"]


def test_a_failed_validation_emits_its_failed_assertions_in_the_fail_event(
    lineage_events, monkeypatch, mlflow_connection, aws_connection, mlflow_server, s3_server, s3_bucket
):
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests._support.churn_sample import make_customers
    from tests.dags.validation_dags import s3_data_validation

    _validation_suite(monkeypatch, s3_server, s3_bucket)
    frame = make_customers(ROWS, seed=12, with_label=False)
    frame.loc[[8, 9], "age"] = np.nan
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    s3_server.client().put_object(Bucket=s3_bucket, Key="customers/part-0.parquet", Body=sink.getvalue())

    dag_run = s3_data_validation().test()
    assert dag_run.state == "failed"

    (event,) = lineage_events("validate", "FAIL")
    (data,) = event["inputs"]
    failed = [item for item in data["facets"]["dataQualityAssertions"]["assertions"] if not item["success"]]
    assert failed and {item.get("column") for item in failed} == {"age"}
    assert data["inputFacets"]["dataQualityMetrics"]["rowCount"] == ROWS


def test_training_events_read_the_training_files_and_write_the_registered_model_version(
    lineage_events, monkeypatch, mlflow_connection, aws_connection, mlflow_server, s3_server, s3_bucket
):
    from tests.dags.training_dags import s3_retraining

    name = f"ol-trained-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    monkeypatch.setenv("AI_TEST_BUCKET", s3_bucket)
    monkeypatch.setenv("AI_TEST_MODEL_NAME", name)
    write_customers(
        f"s3://{s3_bucket}/training",
        2_000,
        seed=21,
        n_files=2,
        with_label=True,
        storage_options=_s3_options(s3_server),
    )

    dag_run = s3_retraining().test()
    assert dag_run.state == "success"

    (event,) = lineage_events("train")
    (data,) = event["inputs"]
    assert (data["namespace"], data["name"]) == (f"s3://{s3_bucket}", "training/")
    assert "churned" in {field["name"] for field in data["facets"]["schema"]["fields"]}
    assert data["facets"]["version"]["datasetVersion"]
    (registered,) = event["outputs"]
    assert (registered["namespace"], registered["name"]) == ("mlflow-model", name)
    assert registered["facets"]["version"]["datasetVersion"] == "1"
    facet = _run_facet(event)
    assert (facet["job"], facet["modelName"], facet["modelVersion"]) == ("train", name, "1")
    assert facet["modelAlias"] == "challenger" and facet["mlflowRunId"]


def test_gate_drift_and_promotion_events_name_the_model_versions_they_used(
    lineage_events, monkeypatch, mlflow_connection, mlflow_server, tmp_path
):
    from mlflow import MlflowClient

    from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile
    from tests._support.churn_sample import FEATURES, make_customers
    from tests.dags.evaluation_dags import drift_check, evaluation_gate
    from tests.dags.promotion_dags import promote_then_check

    name = f"ol-gate-{uuid.uuid4().hex[:6]}"
    champion = train_and_register(mlflow_server.url, name, alias="champion", n_rows=3000, seed=0)
    train_and_register(mlflow_server.url, name, alias="challenger", n_rows=3000, seed=1)
    profile = build_profile(make_customers(3000, seed=0), list(FEATURES))
    MlflowClient(tracking_uri=mlflow_server.url).log_dict(champion["run_id"], profile, PROFILE_ARTIFACT)
    write_customers(tmp_path / "holdout", 2000, seed=11, with_label=True)
    write_customers(tmp_path / "current", 2000, seed=5)
    monkeypatch.setenv("AI_TEST_CHALLENGER", f"{name}@challenger")
    monkeypatch.setenv("AI_TEST_HOLDOUT", str(tmp_path / "holdout"))
    monkeypatch.setenv("AI_TEST_DRIFT_MODEL", f"{name}@champion")
    monkeypatch.setenv("AI_TEST_CURRENT", str(tmp_path / "current"))
    monkeypatch.setenv("AI_TEST_MODEL", name)

    assert evaluation_gate().test().state == "success"
    assert drift_check().test().state == "success"
    assert promote_then_check().test().state == "success"

    (gate,) = lineage_events("gate")
    assert {(item["namespace"], item["name"]) for item in gate["inputs"]} == {
        ("file", str(tmp_path / "holdout")),
        ("mlflow-model", name),
    }
    versions = {
        item["facets"]["version"]["datasetVersion"]
        for item in gate["inputs"]
        if item["namespace"] == "mlflow-model"
    }
    assert versions == {"1", "2"}  # the challenger and the champion it is compared with
    assert (_run_facet(gate)["job"], _run_facet(gate)["modelVersion"]) == ("evaluate", "2")

    (drift,) = lineage_events("drift")
    data = [item for item in drift["inputs"] if item["namespace"] == "file"]
    assert [item["name"] for item in data] == [str(tmp_path / "current")]
    assert data[0]["facets"]["schema"]["fields"] and data[0]["facets"]["version"]["datasetVersion"]
    assert (_run_facet(drift)["job"], _run_facet(drift)["modelVersion"]) == ("drift", "1")

    (promotion,) = lineage_events("promote")
    (moved,) = promotion["outputs"]
    assert (moved["namespace"], moved["name"], moved["facets"]["version"]["datasetVersion"]) == (
        "mlflow-model",
        name,
        "2",
    )
    facet = _run_facet(promotion)
    assert (facet["job"], facet["modelAlias"], facet["modelVersion"]) == ("promote", "champion", "2")
    assert facet["mlflowRunId"]


def test_inference_in_kubernetes_mode_has_the_same_lineage_marked_kubernetes(
    fake_k8s,  # noqa: F811 (the imported fixture)
    mlflow_connection,
    mlflow_server,
    tmp_path,
):
    """KubernetesPodOperator's own code against the loopback fake API server of
    ``tests/unit/operators/test_kubernetes_execution.py`` (no cluster can run here), which serves
    the result a runtime pod writes; the lineage is what the OpenLineage listener asks the operator
    for once the task ends (the listener itself runs in the ``dag.test()`` cases above)."""
    from airflow_ai_provider.operators.inference import BatchInferenceOperator
    from tests.unit.operators import test_kubernetes_execution as k8s

    name = f"ol-k8s-{uuid.uuid4().hex[:6]}"
    model = train_and_register(mlflow_server.url, name, alias="champion", n_rows=1_000)
    part = "s3://data/predictions/run1/part-00000-of-00001.parquet"
    fake_k8s.result = {
        "job": "infer",
        "status": "success",
        "model": {"name": name, "version": str(model["version"]), "alias": "champion"},
        "rows_in": 1000,
        "rows_out": 1000,
        "outputs": [{"uri": part, "rows": 1000, "bytes": 52_000, "sha256": "ab" * 32}],
        "inputs": [{"uri": "s3://data/customers/a.parquet", "bytes": 40_000, "format": "parquet"}],
        "input_source": "s3://data/customers/",
        "input_digest": "d1g35t",
        "input_schema": {"customer_id": "string", "tenure_months": "int64"},
    }
    operator = BatchInferenceOperator(
        task_id="check",
        model=f"{name}@champion",
        input_uri="s3://data/customers/",
        output_uri="s3://data/predictions/run1",
        execution_mode="kubernetes",
        image=k8s.IMAGE,
        namespace="ml",
        kubernetes_conn_id=None,
        config_file=fake_k8s.kubeconfig(tmp_path / "kubeconfig.json"),
        startup_check_interval_seconds=0,
    )
    context = k8s._context()

    result = operator.execute(context)
    lineage = operator.get_openlineage_facets_on_complete(context["ti"])

    assert any(call.startswith("create pod") for call in fake_k8s.calls)
    (data, registered) = lineage.inputs
    assert (data.namespace, data.name) == ("s3://data", "customers/")
    assert [field.name for field in data.facets["schema"].fields] == ["customer_id", "tenure_months"]
    assert data.facets["version"].datasetVersion == "d1g35t"
    assert (registered.namespace, registered.name) == ("mlflow-model", name)
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("s3://data", "predictions/run1/part-00000-of-00001.parquet")
    assert output.outputFacets["outputStatistics"].rowCount == 1000
    assert output.facets["version"].datasetVersion == "ab" * 32
    facet = lineage.run_facets["airflowAiProvider"]
    assert (facet.executionMode, facet.modelVersion) == ("kubernetes", str(model["version"]))
    assert facet.mlflowRunId == result["mlflow_run_id"]
