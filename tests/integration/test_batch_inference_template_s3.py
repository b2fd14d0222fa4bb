"""The batch-inference template on object storage: with an ``s3://`` data root (a real moto server,
reached only through the template's AWS connection) and a real ``mlflow server``, ``dag.test()``
scores the data on S3, writes the predictions and the review file there, and announces ``s3://``
Assets. The template runs as a deployment configures it (``tests/dags/adapted_template_dags.py``)."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import asset_event
from tests._support.churn_sample import train_and_register, write_customers
from tests._support.human_input import HumanInput, timeout_sweep
from tests.dags.adapted_template_dags import s3_batch_inference

ROWS = 2_000
REVIEW_TIMEOUT_S = 1.5  # the adapted DAG's REVIEW_TIMEOUT


@pytest.fixture(scope="module")
def champion(mlflow_server) -> str:
    return str(train_and_register(mlflow_server.url, "churn", alias="champion", n_rows=3_000)["version"])


def _objects(s3_server, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    keys = sorted(item["Key"] for item in listing.get("Contents", []) if not item["Key"].endswith("/"))
    return {key[len(prefix) :]: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_batch_inference_on_an_s3_data_root_writes_predictions_and_review_to_s3(s3_root, champion, s3_server):
    from tests._support.airflow_records import dag_run_outcomes

    dag = s3_batch_inference()
    scoring, predictions = f"{s3_root}/scoring/customers", f"{s3_root}/predictions"
    assert {asset.uri for asset in dag.timetable.asset_condition.objects} == {"mlflow-model://churn", scoring}
    assert [asset.uri for asset in dag.get_task("publish").outlets] == [predictions]
    bucket, prefix = urlsplit(s3_root).netloc, urlsplit(s3_root).path.strip("/")
    write_customers(
        scoring,
        ROWS,
        seed=21,
        n_files=2,
        storage_options=s3_server.storage_options(),
    )

    # No reviewer answers: past the review's timeout the scheduler's own sweep picks the default.
    human = HumanInput(dag.dag_id, timeout_sweep(REVIEW_TIMEOUT_S + 0.5), wait_s=300)
    dag_run = dag.test()
    human.result()

    assert dag_run.state == "success"
    outcomes = {o.task_id: o for o in dag_run_outcomes(dag_run.dag_id, dag_run.run_id)}
    assert outcomes["publish"].state == "success"
    run_folder = dag_run.run_id.replace(":", "-").replace("+", "-")
    summary = outcomes["route_low_confidence"].result
    assert summary["output_uri"] == f"{predictions}/{run_folder}"
    assert summary["review_file"] == f"{summary['output_uri']}/review/low_confidence.parquet"

    # On S3: both shards' parts and the review file, which holds exactly the rows below the threshold.
    stored = _objects(s3_server, bucket, f"{prefix}/predictions/{run_folder}/")
    assert sorted(stored) == [
        "part-00000-of-00002.parquet",
        "part-00001-of-00002.parquet",
        "review/low_confidence.parquet",
    ]
    parts = [pq.read_table(io.BytesIO(stored[name])) for name in sorted(stored) if name.startswith("part-")]
    assert sum(part.num_rows for part in parts) == ROWS
    threshold = dag.params["confidence_threshold"]
    below = sorted(
        customer
        for part in parts
        for customer in part.filter(pc.less(part["confidence"], threshold))["customer_id"].to_pylist()
    )
    review = pq.read_table(io.BytesIO(stored["review/low_confidence.parquet"]))
    assert below and sorted(review["customer_id"].to_pylist()) == below
    assert summary["low_confidence_rows"] == len(below)

    # The predictions Asset the run announced is the S3 one, with the version that scored.
    uri, extra = asset_event("s3_churn_predictions", dag_run.run_id)
    assert uri == predictions
    assert extra["model_version"] == champion and extra["review"] == "Accept"
    assert extra["review_file"] == summary["review_file"]
