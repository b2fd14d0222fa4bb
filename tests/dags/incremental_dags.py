"""DAGs of the incremental re-embedding tests: a corpus embedded with previous_output and a vector index.

Settings come from environment variables the tests set (``AI_TEST_DATA``, ``AI_TEST_MODEL``, and
``AI_TEST_PREVIOUS``, the first run's output folder, rendered into ``previous_output`` from a param).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Asset

from airflow_ai_provider.operators.inference import BatchInferenceOperator

VECTORS = Asset(name="incremental_vectors", uri="file:///tmp/incremental-vectors")


def incremental_embedding(
    dag_id: str = "incremental_embedding", corpus: str = "corpus-1", previous_output: str | None = None
) -> DAG:
    """One local inference task embedding ``$AI_TEST_DATA/<corpus>`` into
    ``$AI_TEST_DATA/vectors/<run_id>``, reusing ``previous_output`` and indexing ``embedding``."""
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    params = {"previous": os.environ.get("AI_TEST_PREVIOUS", f"{data}/none")}
    with DAG(dag_id, schedule=None, params=params) as dag:
        BatchInferenceOperator(
            task_id="embed",
            model=os.environ.get("AI_TEST_MODEL", "doc-embedder/1"),
            input_uri=f"{data}/{corpus}",
            output_uri=f"file://{data}/vectors/{{{{ run_id }}}}",
            id_columns=["doc_id"],
            content_columns=["text"],
            output_columns=["embedding"],
            previous_output=previous_output,
            vector_index="embedding",
            index_check_queries=10,
            execution_mode="local",
            outlets=[VECTORS],
            retries=1,
        )
    return dag


DATA = os.environ.get("AI_TEST_DATA", "/tmp")
incremental_embedding("incremental_first")
incremental_embedding("incremental_second", "corpus-2", "{{ params.previous }}")
incremental_embedding("incremental_bad_previous", previous_output=f"{DATA}/old")
