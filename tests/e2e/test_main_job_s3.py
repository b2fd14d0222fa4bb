"""The main job with S3 as the data root: the full chain through the real Airflow scheduler, the
data, the review file and the predictions in a bucket of a moto server (on 127.0.0.1), reached by
the worker, the triggerer and the local runtimes through one Airflow AWS connection.

The checks of the local main job (:class:`MainJobChecks`) run here too, after the S3-only ones.
"""

from __future__ import annotations

import pytest

from tests._support.stack import LANDING, run_chain, start_stack, write_sample_data
from tests.e2e.main_job_checks import (
    FIRST_BATCH_ROWS,
    SCORING_ROWS,
    MainJobChecks,
    asset_events,
    prediction_summary,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("main-job-s3"), data_root="s3")
    try:
        write_sample_data(running, rows=FIRST_BATCH_ROWS, scoring_rows=SCORING_ROWS)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def first_chain(stack):
    return run_chain(stack, rows=FIRST_BATCH_ROWS)


def test_landed_data_review_file_and_predictions_are_in_the_bucket(stack, first_chain):
    assert stack.data_root.startswith("s3://")
    ingest = first_chain.runs["churn_ingest"]["dag_run_id"]
    (validated,) = asset_events(stack, "churn_ingest", ingest)
    raw = validated["extra"]["input_uri"]
    assert raw.startswith(stack.uri("raw/customers") + "/")
    names = {uri.removeprefix(raw + "/") for uri in stack.list_files(raw)}
    assert {"customers-00000.parquet", "customers-00001.parquet"} <= names
    summary = prediction_summary(stack, first_chain)
    predictions = stack.list_files(summary["output_uri"])
    assert [uri.rsplit("/", 1)[1] for uri in predictions if "/part-" in uri] == [
        "part-00000-of-00002.parquet",
        "part-00001-of-00002.parquet",
    ]
    assert summary["low_confidence_rows"] > 0
    assert summary["review_file"] == f"{summary['output_uri']}/review/low_confidence.parquet"
    assert summary["review_file"] in predictions
    assert stack.list_files(stack.uri(LANDING)) == []


def test_asset_events_of_the_chain_name_s3_uris(stack, first_chain):
    events = [
        event
        for dag_id, run in first_chain.runs.items()
        for event in asset_events(stack, dag_id, run["dag_run_id"])
    ]
    by_name = {event["name"]: event for event in events}
    assert by_name["churn_validated_data"]["uri"] == stack.uri("raw/customers")
    assert by_name["churn_predictions"]["uri"] == stack.uri("predictions")
    assert by_name["churn_predictions"]["extra"]["output_uri"].startswith(stack.uri("predictions") + "/")


def test_nothing_is_written_under_the_local_data_folder(stack, first_chain):
    assert [path for path in stack.data.rglob("*")] == []
    # A data root mistaken for a local path would show up as a folder named "s3:" somewhere.
    assert [path for path in stack.home.rglob("s3:*")] == []


class TestMainJobOnS3(MainJobChecks):
    """Every check of the main job, with the data root on S3."""
