"""``airflow-ai lineage --downstream``: what used a model version, from a real MLflow store.

The records are the lineage tests' SQLite store (see :mod:`tests.unit.lineage.chain_records`), and
paging and the unreachable case run against a real ``mlflow server``. Airflow's Asset events come
from a stand-in lookup here (the integration test reads them from Airflow's database).
"""

from __future__ import annotations

import json
import socket
import time

from airflow_ai_provider import cli, lineage
from airflow_ai_provider.lineage import search
from tests.unit.lineage.chain_records import OUT, SCORING

EVENT = {"id": 7, "asset_uri": OUT, "rows": 50, "source_dag_id": SCORING[0], "source_run_id": SCORING[1],
         "source_task": "score[0]", "timestamp": "2026-01-02T00:00:00+00:00", "triggered": []}  # fmt: skip


def _events(seen: list):
    def lookup(dag_runs, name, version):
        seen.append((dag_runs, name, version))
        return [EVENT]

    return lookup


def test_downstream_lists_every_shard_output_with_rows_dag_run_and_asset_events(lineage_cli, monkeypatch):
    seen: list = []
    monkeypatch.setattr(lineage, "airflow_asset_events", lambda: _events(seen))
    code, lines, err = lineage_cli("--downstream", "churn/2")
    assert (code, err) == (0, "")
    assert lines[0] == "model churn version 2: 2 inference output(s), 50 rows, 1 DAG run(s)"
    first = " ".join(lines[1].split())
    assert first.startswith(f"-> output {OUT} (1 part file, ")
    assert f"by DAG {SCORING[0]} run {SCORING[1]} task score[" in first and "(success) via champion," in first
    assert sorted(int(line.split(" rows)")[0].rsplit(" ", 1)[1]) for line in lines[1:3]) == [20, 30]
    assert {line.split("task ")[1].split()[0] for line in lines[1:3]} == {"score[0]", "score[1]"}
    assert lines[3] == f"DAG runs: {SCORING[0]}/{SCORING[1]} success"
    assert lines[4] == "Asset events: 1"
    assert seen == [([SCORING], "churn", "2")]


def test_downstream_json_has_outputs_files_rows_and_every_spelling_agrees(lineage_cli, monkeypatch):
    monkeypatch.setattr(lineage, "airflow_asset_events", lambda: _events([]))
    results = []
    for target in ("churn/2", "models:/churn/2", "churn@champion"):
        code, lines, _ = lineage_cli("--downstream", target, "--json")
        assert code == 0
        results.append(json.loads("\n".join(lines)))
    assert results[0] == results[1] == results[2]
    found = results[0]
    assert found["model"] == {"name": "churn", "version": "2"} and found["rows"] == 50
    files = sorted(file for out in found["outputs"] for file in out["files"])
    assert files == [f"{OUT}/part-00000-of-00002.parquet", f"{OUT}/part-00001-of-00002.parquet"]
    assert {out["output_uri"] for out in found["outputs"]} == {OUT}
    assert found["dag_runs"] == [{"dag_id": SCORING[0], "run_id": SCORING[1], "state": "success"}]
    assert found["asset_events"] == [EVENT]


def test_downstream_of_an_unused_version_lists_nothing_and_exits_0(lineage_cli):
    code, lines, _ = lineage_cli("--downstream", "churn/1", "--no-airflow")
    assert code == 0
    assert lines[0] == "model churn version 1: 0 inference output(s), 0 rows, 0 DAG run(s)"
    assert lines[-1] == "Asset events: not read (Airflow database not read or not readable)"


def test_downstream_of_the_fallback_version_says_it_scored_as_fallback(lineage_cli):
    _, lines, _ = lineage_cli("--downstream", "fell_back/1", "--no-airflow")
    assert "via champion_previous as fallback" in lines[1]


def test_downstream_unknown_version_or_predictions_uri_exits_2_with_one_line(lineage_cli):
    code, lines, err = lineage_cli("--downstream", "churn/99")
    assert (code, lines, err.count("\n")) == (2, [], 1)
    assert "model 'churn' has no version 99 in the registry: check the name and version" in err
    code, lines, err = lineage_cli("--downstream", "s3://bucket/predictions/x")
    assert (code, lines, err.count("\n")) == (2, [], 1)
    assert "--downstream takes a model version" in err


def test_downstream_pages_through_every_search_result(mlflow_server, monkeypatch):
    """A page size of 2 (patched) over 5 runs: all 5 are listed."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    name = f"paged-{time.time_ns()}"
    client.create_registered_model(name)
    client.create_model_version(name, source="s3://nowhere/model")
    experiment = client.create_experiment(f"exp-{name}")
    for index in range(5):
        run = client.create_run(experiment, tags={"ai.job": "infer", "ai.model_name": name,
                                                  "ai.model_version": "1", "airflow.dag_id": "d",
                                                  "airflow.run_id": f"r{index}"})  # fmt: skip
        client.log_metric(run.info.run_id, "rows_out", 10)
    monkeypatch.setattr(search, "_MAX_PAGE", 2)
    found = lineage.downstream(client, f"{name}/1", lambda d, r: None, None)
    assert (len(found.outputs), found.rows) == (5, 50)
    assert [run["run_id"] for run in found.dag_runs] == [f"r{index}" for index in range(5)]


def test_downstream_against_a_hung_mlflow_exits_3_within_the_service_timeout(monkeypatch, capsys):
    """A listening socket that never answers; service_timeout 2 s. It fails in under 60 s."""
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__SERVICE_TIMEOUT", "2")
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        started = time.monotonic()
        code = cli.main(["lineage", "--downstream", "churn/2", "--no-airflow", "--tracking-uri",
                         f"http://127.0.0.1:{hung.getsockname()[1]}"])  # fmt: skip
        took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert (code, out, err.count("\n")) == (3, "", 1), err
    assert took < 60
