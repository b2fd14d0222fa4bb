"""DAGs of the vector-output tests: a text embedding model's matrix written as one vector column.

Settings come from environment variables the tests set (``AI_TEST_DATA``, ``AI_TEST_MODEL``).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def vector_outputs(dag_id: str = "vector_outputs", output_columns: list[str] | None = None) -> DAG:
    """One local inference task of ``$AI_TEST_DATA/docs`` whose model output is named by
    ``output_columns`` (``["embedding"]`` by default)."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG(dag_id, schedule=None) as dag:
        BatchInferenceOperator(
            task_id="embed",
            model=os.environ.get("AI_TEST_MODEL", "text-embedder/1"),
            input_uri=f"{data}/docs",
            output_uri=f"file://{data}/vectors/{{{{ run_id }}}}",
            id_columns=["doc_id"],
            output_columns=output_columns or ["embedding"],
            execution_mode="local",
            retries=1,
        )
    return dag


vector_outputs()
vector_outputs("vector_outputs_clashing", output_columns=["doc_id"])
