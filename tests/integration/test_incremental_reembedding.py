"""Incremental re-embedding through a real Airflow DAG (``dag.test()``), a real ``mlflow server`` and the
local runtime: a second run with ``previous_output`` embeds only the changed rows, the result is recorded
on the task's MLflow run and the Asset event, and a vector index is built and checked."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import asset_event, dag_run_mlflow_runs, task_tries
from tests._support.text_models import DIM, LOG_VARIABLE, RecordingEmbedder, register_text_model


@pytest.fixture(scope="module")
def doc_embedder(mlflow_server) -> str:
    return register_text_model(
        mlflow_server.url, "incremental-reembedding", "doc-embedder", RecordingEmbedder()
    )


def corpus(changed: dict[int, str] | None = None) -> pa.Table:
    texts = [f"document {i} on subject {i % 9}" for i in range(50)]
    for row, text in (changed or {}).items():
        texts[row] = text
    return pa.table({"doc_id": pa.array(range(50), pa.int64()), "text": texts})


@pytest.fixture
def data(tmp_path: Path, monkeypatch, doc_embedder) -> Path:
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL", doc_embedder)
    monkeypatch.setenv(LOG_VARIABLE, str(tmp_path / "embedded.txt"))
    return tmp_path


def embedded(data: Path) -> list[str]:
    path = data / "embedded.txt"
    texts = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return texts


def write_corpus(data: Path, name: str, table: pa.Table) -> None:
    (data / name).mkdir()
    pq.write_table(table, data / name / "docs.parquet")


def test_a_second_dag_run_with_previous_output_embeds_only_the_changed_rows_and_records_it(
    data, mlflow_connection, mlflow_server
):
    from tests.dags.incremental_dags import incremental_embedding

    changed = {3: "document three, rewritten", 17: "seventeen changed", 42: "and forty-two"}
    write_corpus(data, "corpus-1", corpus())
    write_corpus(data, "corpus-2", corpus(changed))
    first = incremental_embedding("incremental_first").test()
    assert first.state == "success"
    assert len(embedded(data)) == 50 + 10  # every row, and the index check's 10 queries
    previous = f"file://{data}/vectors/{first.run_id}"

    second = incremental_embedding("incremental_second", "corpus-2", "{{ params.previous }}").test(
        run_conf={"previous": previous}
    )

    assert second.state == "success"
    texts = embedded(data)
    assert sorted(texts[:3]) == sorted(changed.values()) and len(texts) == 3 + 10
    output = data / "vectors" / second.run_id
    assert sorted(path.name for path in output.iterdir()) == [
        "index-00000-of-00001.faiss", "index-00000-of-00001.ids.parquet", "part-00000-of-00001.parquet",
    ]  # fmt: skip
    written = pq.read_table(output / "part-00000-of-00001.parquet")
    assert written.column_names == ["doc_id", "content_hash", "embedding"]
    assert written.column("doc_id").to_pylist() == list(range(50))

    _, extra = asset_event("incremental_vectors", second.run_id)
    assert (extra["rows_predicted"], extra["rows_reused"], extra["recompute_reason"]) == (3, 47, "none")
    assert len(extra["content_digest"]) == 64
    assert extra["model_version"] == os.environ["AI_TEST_MODEL"].rsplit("/", 1)[1]
    assert len(extra["index_files"]) == 2
    (run,) = dag_run_mlflow_runs(
        mlflow_server.url, second.run_id, experiment_name="airflow/incremental_second", role="task"
    )
    assert (run.data.metrics["rows_predicted"], run.data.metrics["rows_reused"]) == (3, 47)
    assert run.data.metrics["index_check_hits"] == 10
    assert run.data.tags["ai.content_digest"] == extra["content_digest"]
    assert run.data.tags["ai.recompute_reason"] == "none"


def test_a_bad_previous_output_fails_once_in_one_line_and_leaves_no_output(
    data, mlflow_connection, mlflow_server, capfd
):
    from tests.dags.incremental_dags import incremental_embedding

    write_corpus(data, "corpus-1", corpus())
    (data / "old").mkdir()
    pq.write_table(
        pa.table({"doc_id": [1], "vector": [[0.0] * DIM]}), data / "old" / "part-00000-of-00001.parquet"
    )

    dag_run = incremental_embedding("incremental_bad_previous", previous_output=f"{data}/old").test()

    assert dag_run.state == "failed"
    assert set(task_tries(dag_run.run_id)) == {1}  # bad input is not retried
    assert "previous_output file file://" in capfd.readouterr().out
    folder = data / "vectors" / dag_run.run_id
    assert not folder.exists() or not any(folder.iterdir())
    assert embedded(data) == []
    runs = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name="airflow/incremental_bad_previous", role="task"
    )
    assert [run.info.status for run in runs] == ["FAILED"]
