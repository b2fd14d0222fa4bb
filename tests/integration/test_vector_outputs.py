"""Vector outputs through a real Airflow DAG (``dag.test()``), a real ``mlflow server`` and the local
runtime: ``output_columns=["embedding"]`` writes one ``fixed_size_list<float32>`` column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import dag_run_mlflow_runs, task_tries
from tests._support.text_models import register_text_model

DIM = 16


class HashingEmbedder(mlflow.pyfunc.PythonModel):
    """A text embedding model: each text's character counts of the letters a to p, as float32."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        texts = model_input["text"].tolist()
        return np.array([[t.count(chr(97 + i)) for i in range(DIM)] for t in texts], dtype=np.float32)


@pytest.fixture(scope="module")
def text_embedder(mlflow_server) -> str:
    return register_text_model(mlflow_server.url, "vector-outputs", "text-embedder", HashingEmbedder())


@pytest.fixture
def docs(tmp_path: Path, monkeypatch, text_embedder) -> list[str]:
    texts = [f"document {i} about {'search ' * (i % 3)}and embeddings" for i in range(200)]
    (tmp_path / "docs").mkdir()
    pq.write_table(pa.table({"doc_id": range(200), "text": texts}), tmp_path / "docs" / "docs.parquet")
    monkeypatch.setenv("AI_TEST_DATA", str(tmp_path))
    monkeypatch.setenv("AI_TEST_MODEL", text_embedder)
    return texts


def test_output_columns_embedding_writes_one_fixed_size_list_column_through_the_operator(
    docs, mlflow_connection, tmp_path
):
    from tests.dags.vector_output_dags import vector_outputs

    dag_run = vector_outputs().test()

    assert dag_run.state == "success"
    written = pq.read_table(tmp_path / "vectors" / dag_run.run_id)
    assert written.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert written.column_names == ["doc_id", "embedding"]
    expected = HashingEmbedder().predict(None, pd.DataFrame({"text": docs}))
    np.testing.assert_array_equal(
        np.stack(written.column("embedding").to_numpy(zero_copy_only=False)), expected
    )


def test_an_output_column_clashing_with_an_id_column_fails_once_and_leaves_no_output(
    docs, mlflow_connection, mlflow_server, tmp_path, capfd
):
    from tests.dags.vector_output_dags import vector_outputs

    dag_run = vector_outputs("vector_outputs_clashing", output_columns=["doc_id"]).test()

    assert dag_run.state == "failed"
    assert set(task_tries(dag_run.run_id)) == {1}  # bad input is not retried
    assert "output column(s) 'doc_id' clash with the id columns" in capfd.readouterr().out
    folder = tmp_path / "vectors" / dag_run.run_id
    assert not folder.exists() or not any(folder.rglob("*.parquet"))
    runs = dag_run_mlflow_runs(
        mlflow_server.url, dag_run.run_id, experiment_name="airflow/vector_outputs_clashing", role="task"
    )
    assert [run.info.status for run in runs] == ["FAILED"]
