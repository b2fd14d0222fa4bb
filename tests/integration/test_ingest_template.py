"""The ingest template on object storage: with an ``s3://`` data root (a real moto server, the
template's AWS connection) ``dag.test()`` moves the landed files into the run's raw prefix on S3,
validates them there and announces an ``s3://`` Asset; its ``ingest`` task, called as a run the
landing watcher started, takes only the announced files and skips when another run took them."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from urllib.parse import urlsplit

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_ai_provider.landing import event_payload
from airflow_ai_provider.storage import list_files
from tests._support.airflow_records import asset_event
from tests._support.churn_sample import write_customers
from tests.conftest import REPO_ROOT
from tests.dags.adapted_template_dags import s3_ingest


def _fresh_template() -> ModuleType:
    """``dag_templates/churn_ingest.py`` executed anew (it reads its environment when loaded), without
    replacing the module other tests import."""
    path = REPO_ROOT / "dag_templates" / "churn_ingest.py"
    spec = importlib.util.spec_from_file_location(f"churn_ingest_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def s3_template(monkeypatch, aws_connection, s3_server, s3_bucket) -> ModuleType:
    """The template with its data root on S3, reached through the ``aws_test`` connection."""
    monkeypatch.setenv("AI_TEMPLATES_DATA_ROOT", f"s3://{s3_bucket}/churn")
    monkeypatch.setenv("AI_TEMPLATES_AWS_CONN_ID", aws_connection)
    return _fresh_template()


def _keys(s3_server, bucket: str, prefix: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(
        item["Key"][len(prefix) :] for item in listing.get("Contents", []) if item["Key"][-1] != "/"
    )


def test_ingest_on_an_s3_data_root_moves_validates_and_announces_on_s3(s3_root, s3_server):
    dag = s3_ingest()
    s3_bucket = urlsplit(s3_root).netloc
    landing = dag.get_task("ingest").python_callable.__globals__["LANDING"]
    assert landing == f"{s3_root}/landing/customers"
    write_customers(
        landing, 600, seed=5, n_files=2, with_label=True, storage_options=s3_server.storage_options()
    )

    dag_run = dag.test()

    assert dag_run.state == "success"
    run_folder = dag_run.run_id.replace(":", "-").replace("+", "-")
    assert _keys(s3_server, s3_bucket, "churn/landing/customers/") == []
    moved = _keys(s3_server, s3_bucket, f"churn/raw/customers/{run_folder}/")
    assert {"customers-00000.parquet", "customers-00001.parquet"} <= set(moved)
    assert any(key.startswith("_validation/") for key in moved)  # the reports, next to the data
    uri, extra = asset_event("s3_churn_validated_data", dag_run.run_id)
    assert uri == f"s3://{s3_bucket}/churn/raw/customers"
    assert extra["input_uri"] == f"s3://{s3_bucket}/churn/raw/customers/{run_folder}"
    assert extra["row_count"] == 600


def _ingest(template: ModuleType, run_id: str, events: dict):
    """The template's own ``ingest`` function, called as Airflow calls it in a run with these events."""
    params = {"landing": None, "suite": None, "for_training": True}
    return template.dag.get_task("ingest").python_callable(
        params=params, run_id=run_id, triggering_asset_events=events
    )


def _landing_event(template: ModuleType) -> dict:
    """The events of a run the landing watcher started, announcing what is in the landing folder now."""
    payload = event_payload(template.LANDING, list_files(template.LANDING, aws_conn_id=template.AWS_CONN_ID))
    return {template.LANDED_FILES: [SimpleNamespace(extra={"from_trigger": True, "payload": payload})]}


def test_a_run_the_watcher_started_takes_only_the_announced_files_from_s3(s3_template, s3_server, s3_bucket):
    options = s3_server.storage_options()
    write_customers(s3_template.LANDING, 100, seed=1, n_files=2, storage_options=options)
    events = _landing_event(s3_template)
    s3_server.client().put_object(Bucket=s3_bucket, Key="churn/landing/customers/late.csv", Body=b"id\n1\n")

    target = _ingest(s3_template, "asset_triggered__2026-12-01T10:00:00+00:00", events)

    assert target == f"s3://{s3_bucket}/churn/raw/customers/asset_triggered__2026-12-01T10-00-00-00-00"
    assert _keys(s3_server, s3_bucket, "churn/landing/customers/") == ["late.csv"]
    assert _keys(s3_server, s3_bucket, "churn/raw/customers/asset_triggered__2026-12-01T10-00-00-00-00/") == [
        "customers-00000.parquet",
        "customers-00001.parquet",
    ]


def test_a_run_the_watcher_started_skips_when_another_run_took_its_files(monkeypatch, tmp_path):
    monkeypatch.setenv("AI_TEMPLATES_DATA_ROOT", str(tmp_path))
    monkeypatch.delenv("AI_TEMPLATES_AWS_CONN_ID", raising=False)
    template = _fresh_template()
    landing = Path(tmp_path / "landing" / "customers")
    write_customers(str(landing), 50, seed=2)
    events = _landing_event(template)
    assert _ingest(template, "manual__1", {}).endswith("/raw/customers/manual__1")  # a manual run took all

    with pytest.raises(AirflowSkipException, match=r"the files announced in .* are no longer there"):
        _ingest(template, "asset_triggered__2", events)
    assert not (tmp_path / "raw" / "customers" / "asset_triggered__2").exists()
