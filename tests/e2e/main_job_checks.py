"""The checks of the main job, one copy for every data root: each test module subclasses
:class:`MainJobChecks` and provides the module-scoped fixtures ``stack`` (a running
:class:`tests._support.stack.Stack` with its holdout and scoring data written) and ``first_chain``
(the :class:`~tests._support.stack.ChainReport` of :data:`FIRST_BATCH_ROWS` landed rows).

The methods run in the order written: the last one lands a batch whose retraining fails the gate.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from tests._support.stack import LANDING, Stack, run_chain, xcom

FIRST_BATCH_ROWS = 8_000
SCORING_ROWS = 20_000


def runs(stack: Stack, dag_id: str) -> list[dict]:
    """Every run of ``dag_id``, oldest first."""
    return stack.airflow.api("GET", f"/dags/{dag_id}/dagRuns?order_by=id")["dag_runs"]


def asset_events(stack: Stack, dag_id: str, run_id: str) -> list[dict]:
    """The Asset events a DAG run emitted."""
    query = urlencode({"source_dag_id": dag_id, "source_run_id": run_id})
    return stack.airflow.api("GET", f"/assets/events?{query}")["asset_events"]


def parquet_rows(stack: Stack, uris: list[str]) -> int:
    """Rows of the Parquet files ``uris`` of the data root (their footers)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(io.BytesIO(stack.read_bytes(uri))).num_rows for uri in uris)


def prediction_summary(stack: Stack, chain) -> dict:
    """What the inference run's ``route_low_confidence`` task returned."""
    run_id = chain.runs["churn_batch_inference"]["dag_run_id"]
    return xcom(stack, "churn_batch_inference", run_id, "route_low_confidence")


class MainJobChecks:
    """The main job through the real scheduler, whatever the data root."""

    def test_landed_files_start_one_ingest_run_with_no_trigger_call(self, stack, first_chain):
        ingest = first_chain.runs["churn_ingest"]
        assert ingest["run_type"] == "asset_triggered"
        assert [run["dag_run_id"] for run in runs(stack, "churn_ingest")] == [ingest["dag_run_id"]]
        # Started by one event of the landing watcher (no DAG's), naming the landing folder and files.
        path = f"/dags/churn_ingest/dagRuns/{ingest['dag_run_id']}/upstreamAssetEvents"
        (landing,) = stack.airflow.api("GET", path)["asset_events"]
        assert (landing["uri"], landing["source_dag_id"]) == (stack.uri(LANDING), None)
        assert [item["uri"] for item in landing["extra"]["payload"]["files"]] == first_chain.landed
        # The run took the landed files only once complete: every row of both, under their own names.
        (validated,) = asset_events(stack, "churn_ingest", ingest["dag_run_id"])
        assert validated["extra"]["row_count"] == FIRST_BATCH_ROWS
        raw = validated["extra"]["input_uri"]
        taken = [uri for uri in stack.list_files(raw) if uri.rsplit("/", 1)[0] == raw]
        assert [uri.rsplit("/", 1)[1] for uri in taken] == [
            uri.rsplit("/", 1)[1] for uri in first_chain.landed
        ]
        assert stack.list_files(stack.uri(LANDING)) == []

    def test_landing_leads_to_promoted_model_and_predictions_in_order(self, stack, first_chain):
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

    def test_predictions_carry_the_promoted_version(self, stack, first_chain):
        from mlflow import MlflowClient

        promoted = xcom(stack, "churn_retrain", first_chain.runs["churn_retrain"]["dag_run_id"], "promote")
        summary = prediction_summary(stack, first_chain)
        assert summary["model_version"] == promoted["version"]
        assert summary["rows"] == SCORING_ROWS and summary["fallback"] is False
        assert summary["output_uri"].startswith(stack.uri("predictions") + "/")
        parts = [uri for uri in stack.list_files(summary["output_uri"]) if "/part-" in uri]
        assert parquet_rows(stack, parts) == SCORING_ROWS
        client = MlflowClient(tracking_uri=stack.mlflow.url)
        assert str(client.get_registered_model("churn").aliases["champion"]) == promoted["version"]

    def test_lineage_command_prints_the_full_chain(self, stack, first_chain):
        part = f"{prediction_summary(stack, first_chain)['output_uri']}/part-00000-of-00002.parquet"
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

    def test_lineage_downstream_lists_the_predictions_of_the_promoted_version(self, stack, first_chain):
        promoted = xcom(stack, "churn_retrain", first_chain.runs["churn_retrain"]["dag_run_id"], "promote")
        summary = prediction_summary(stack, first_chain)
        inference = first_chain.runs["churn_batch_inference"]
        command = [
            str(Path(sys.executable).parent / "airflow-ai"),
            "lineage",
            "--downstream",
            f"churn/{promoted['version']}",
            "--tracking-uri",
            stack.mlflow.url,
            "--json",
        ]
        env = {"AIRFLOW_HOME": str(stack.airflow.home), "PATH": "/usr/bin:/bin"}
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        used = json.loads(out.stdout)
        # The scoring DAG run's shards, and the retraining's own smoke test, which scored the version too.
        scoring = [o for o in used["outputs"] if o["dag_id"] == "churn_batch_inference"]
        assert sum(o["rows"] for o in scoring) == SCORING_ROWS
        assert {o["output_uri"] for o in scoring} == {summary["output_uri"]}
        assert {(o["run_id"], o["state"]) for o in scoring} == {(inference["dag_run_id"], "success")}
        retrain = first_chain.runs["churn_retrain"]["dag_run_id"]
        assert {(o["dag_id"], o["run_id"], o["task"]) for o in used["outputs"]} - {
            (o["dag_id"], o["run_id"], o["task"]) for o in scoring
        } == {("churn_retrain", retrain, "smoke_score")}
        assert [(r["dag_id"], r["run_id"], r["state"]) for r in used["dag_runs"]] == [
            ("churn_retrain", retrain, "success"),
            ("churn_batch_inference", inference["dag_run_id"], "success"),
        ]
        events = asset_events(stack, "churn_batch_inference", inference["dag_run_id"])
        naming = {e["id"] for e in events if str(e["extra"].get("model_version")) == promoted["version"]}
        listed = [e for e in used["asset_events"] if e["source_dag_id"] == "churn_batch_inference"]
        assert naming and {e["id"] for e in listed} == naming
        # Each event with the rows and location its extra records, as Airflow's API shows it.
        api = {e["id"]: (e["extra"].get("row_count"), e["extra"].get("output_uri")) for e in events}
        assert {e["id"]: (e["rows"], e["output_uri"]) for e in listed} == {i: api[i] for i in naming}, listed

    def test_failing_quality_gate_stops_a_manually_triggered_chain(self, stack, first_chain):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=stack.mlflow.url)
        champion_before = str(client.get_registered_model("churn").aliases["champion"])
        inference_runs_before = len(runs(stack, "churn_batch_inference"))
        stack.airflow.api("POST", "/variables", {"key": "churn_min_accuracy", "value": "0.999"})

        report = run_chain(stack, rows=FIRST_BATCH_ROWS, seed=21, manual=True)

        assert report.runs["churn_ingest"]["run_type"] == "manual"
        assert report.runs["churn_retrain"]["state"] == "success"
        tasks = report.tasks["churn_retrain"]
        assert tasks["keep_champion"] == "success"
        assert tasks["promote"] == tasks["announce"] == "skipped"
        assert "churn_batch_inference" not in report.runs
        assert len(runs(stack, "churn_batch_inference")) == inference_runs_before
        assert str(client.get_registered_model("churn").aliases["champion"]) == champion_before
        gate = xcom(stack, "churn_retrain", report.runs["churn_retrain"]["dag_run_id"], "quality_gate")
        assert gate["details"]["decision"] == "reject"
        assert any("0.999" in reason for reason in gate["details"]["reasons"])
