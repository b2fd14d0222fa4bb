"""The template kit as one system, through the real Airflow scheduler (``airflow standalone``:
LocalExecutor, SQLite, the templates as DAG folder) and a real ``mlflow server``.

One stack serves both scenarios, in order: a passing chain (ingest -> retrain -> promote ->
inference), then new data whose retraining fails the quality gate and must stop the chain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.stack import run_chain, start_stack, write_sample_data, xcom


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("main-job")
    write_sample_data(home / "data", rows=8_000, scoring_rows=20_000)
    running = start_stack(home)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def first_chain(stack):
    return run_chain(stack)


def _runs(stack, dag_id: str) -> list[dict]:
    return stack.airflow.api("GET", f"/dags/{dag_id}/dagRuns?order_by=start_date")["dag_runs"]


def test_one_ingest_trigger_leads_to_promoted_model_and_predictions_in_order(stack, first_chain):
    assert {dag: run["state"] for dag, run in first_chain.runs.items()} == {
        "churn_ingest": "success",
        "churn_retrain": "success",
        "churn_batch_inference": "success",
    }
    ingest, retrain, inference = (
        first_chain.runs[d] for d in ("churn_ingest", "churn_retrain", "churn_batch_inference")
    )
    assert retrain["run_type"] == inference["run_type"] == "asset_triggered"
    assert ingest["start_date"] < retrain["start_date"] < inference["start_date"]
    # Each run was started by an Asset event of the run before it, not by anything else.
    for run, upstream in ((retrain, ingest), (inference, retrain)):
        path = f"/dags/{run['dag_id']}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        events = stack.airflow.api("GET", path)["asset_events"]
        assert {(e["source_dag_id"], e["source_run_id"]) for e in events} == {
            (upstream["dag_id"], upstream["dag_run_id"])
        }
    assert first_chain.tasks["churn_retrain"]["promote"] == "success"
    assert first_chain.tasks["churn_retrain"]["rollback"] == "skipped"


def test_predictions_carry_the_promoted_version(stack, first_chain):
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    promoted = xcom(stack, "churn_retrain", first_chain.runs["churn_retrain"]["dag_run_id"], "promote")
    run_id = first_chain.runs["churn_batch_inference"]["dag_run_id"]
    summary = xcom(stack, "churn_batch_inference", run_id, "route_low_confidence")
    assert summary["model_version"] == promoted["version"]
    assert summary["rows"] == 20_000 and summary["fallback"] is False
    folder = Path(summary["output_uri"].removeprefix("file://"))
    assert sum(pq.read_metadata(part).num_rows for part in folder.glob("part-*.parquet")) == 20_000
    champion = MlflowClient(tracking_uri=stack.mlflow.url).get_registered_model("churn").aliases["champion"]
    assert str(champion) == promoted["version"]


def test_lineage_command_prints_the_full_chain(stack, first_chain):
    summary = xcom(
        stack,
        "churn_batch_inference",
        first_chain.runs["churn_batch_inference"]["dag_run_id"],
        "route_low_confidence",
    )
    part = f"{summary['output_uri']}/part-00000-of-00002.parquet"
    command = [
        str(Path(sys.executable).parent / "airflow-ai"),
        "lineage",
        part,
        "--tracking-uri",
        stack.mlflow.url,
    ]
    env = {"AIRFLOW_HOME": str(stack.airflow.home), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([*command, "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    chain = json.loads(out.stdout)
    assert [hop["hop"] for hop in chain["hops"] if hop["found"]] == [hop["hop"] for hop in chain["hops"]]
    hops = {hop["hop"] for hop in chain["hops"]}
    assert {"inference", "model", "training", "data", "validation", "quality gate", "promotion"} <= hops
    text = subprocess.run(command, capture_output=True, text=True, env=env).stdout
    assert "churn_ingest" in text and "churn_retrain" in text and "churn_batch_inference" in text


def test_failing_quality_gate_stops_the_chain(stack, first_chain):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow.url)
    champion_before = str(client.get_registered_model("churn").aliases["champion"])
    inference_runs_before = len(_runs(stack, "churn_batch_inference"))
    stack.airflow.api("POST", "/variables", {"key": "churn_min_accuracy", "value": "0.999"})
    write_sample_data(stack.data, rows=8_000, scoring_rows=20_000)

    report = run_chain(stack)

    assert report.runs["churn_retrain"]["state"] == "success"
    tasks = report.tasks["churn_retrain"]
    assert tasks["keep_champion"] == "success"
    assert tasks["promote"] == tasks["announce"] == "skipped"
    assert "churn_batch_inference" not in report.runs
    assert len(_runs(stack, "churn_batch_inference")) == inference_runs_before
    assert str(client.get_registered_model("churn").aliases["champion"]) == champion_before
    gate = xcom(stack, "churn_retrain", report.runs["churn_retrain"]["dag_run_id"], "quality_gate")
    assert gate["details"]["decision"] == "reject"
    assert any("0.999" in reason for reason in gate["details"]["reasons"])
