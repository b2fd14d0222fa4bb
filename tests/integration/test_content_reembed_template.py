"""The content templates as shipped, through ``dag.test()`` against a real ``mlflow server`` in local
execution mode: ``content_embedder_train`` trains and registers the TF-IDF + SVD text embedder and
makes it champion; ``content_reembed`` embeds a generated corpus, then re-embeds only the documents
edited since, then everything once a new model version is champion."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._support.airflow_records import asset_event, dag_run_outcomes

DOCS = 240
EDITED = ["D000003", "D000050", "D000101", "D000222"]


def _write_content(folder: Path, frame) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "documents.parquet", index=False)


def _vectors(run_id: str) -> pa.Table:
    from dag_templates.content_reembed import VECTORS

    folder = Path(VECTORS.uri.removeprefix("file://")) / run_id.replace(":", "-").replace("+", "-")
    return pa.concat_tables(pq.read_table(part) for part in sorted(folder.glob("part-*.parquet")))


def _embed_run(run_conf: dict | None = None) -> dict:
    from dag_templates.content_reembed import dag

    dag_run = dag.test(run_conf=run_conf)
    states = {o.task_id: o.state for o in dag_run_outcomes(dag.dag_id, dag_run.run_id)}
    assert dag_run.state == "success", states
    _, extra = asset_event("content_vectors", dag_run.run_id)
    return {"run_id": dag_run.run_id, "extra": extra, "vectors": _vectors(dag_run.run_id)}


def _train_run(corpus: Path) -> str:
    from dag_templates.content_embedder_train import dag

    dag_run = dag.test(run_conf={"corpus_uri": f"file://{corpus}"})
    assert dag_run.state == "success"
    _, extra = asset_event("model:text_embedder", dag_run.run_id)
    return str(extra["model_version"])


def _model_vectors(tracking_uri: str, version: str, texts: list[str]) -> np.ndarray:
    """What the registered version itself returns for ``texts``."""
    import mlflow
    import pandas as pd

    from tests._support.churn_sample import mlflow_uris

    with mlflow_uris(tracking_uri):
        model = mlflow.pyfunc.load_model(f"models:/text_embedder/{version}")
    return np.asarray(model.predict(pd.DataFrame({"text": texts})))


def _search_finds_each_document_itself(extra: dict, vectors: np.ndarray, doc_ids: list[str]) -> None:
    """The run's FAISS index: each document's own vector finds that document first."""
    import faiss

    files = {Path(entry["uri"].removeprefix("file://")).name: entry["uri"] for entry in extra["index_files"]}
    index = faiss.read_index(files["index-00000-of-00001.faiss"].removeprefix("file://"))
    rows = pq.read_table(files["index-00000-of-00001.ids.parquet"].removeprefix("file://")).to_pandas()
    assert index.ntotal == len(doc_ids)
    _, hits = index.search(np.ascontiguousarray(vectors[::20]), 1)
    found = rows.set_index("row").loc[hits[:, 0], "doc_id"].tolist()
    assert found == doc_ids[::20]


@pytest.fixture(scope="module")
def story(mlflow_server, airflow_db, tmp_path_factory) -> dict:
    """Train, embed, edit a few documents and embed again, train a new version and embed again."""
    import json

    from dag_templates.include.text_embedding import generate_corpus

    root = Path(os.environ["AI_TEMPLATES_DATA_ROOT"])
    content = root / "content" / "documents"
    shutil.rmtree(root / "vectors", ignore_errors=True)
    corpus = generate_corpus(DOCS, seed=3)
    _write_content(content, corpus)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.url})
        )
        first_version = _train_run(content)
        first = _embed_run()
        edited = corpus.copy()
        revised = generate_corpus(DOCS, seed=3, revision=1).set_index("doc_id")["text"]
        mask = edited["doc_id"].isin(EDITED)
        edited.loc[mask, "text"] = edited.loc[mask, "doc_id"].map(revised)
        _write_content(content, edited)
        second = _embed_run()
        other_corpus = tmp_path_factory.mktemp("corpus")
        generate_corpus(DOCS * 2, seed=9).to_parquet(other_corpus / "documents.parquet", index=False)
        second_version = _train_run(other_corpus)
        third = _embed_run()
    return {
        "versions": (first_version, second_version),
        "runs": (first, second, third),
        "content": (corpus, edited),
        "tracking_uri": mlflow_server.url,
    }


def test_first_run_embeds_every_document_into_one_float32_vector_column(story):
    first = story["runs"][0]
    version = story["versions"][0]
    table, extra = first["vectors"], first["extra"]
    assert table.num_rows == DOCS and sorted(table.column("doc_id").to_pylist()) == sorted(
        story["content"][0]["doc_id"]
    )
    kind = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(kind) and kind.value_type == pa.float32()
    assert {"doc_id", "content_hash", "embedding"} <= set(table.column_names)
    assert "topic" not in table.column_names and "text" not in table.column_names

    frame = table.to_pandas().set_index("doc_id").loc[story["content"][0]["doc_id"]]
    vectors = np.stack(frame["embedding"].to_numpy())
    expected = _model_vectors(story["tracking_uri"], version, story["content"][0]["text"].tolist())
    assert vectors.shape == expected.shape and np.allclose(vectors, expected, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    assert extra["model_name"] == "text_embedder" and extra["model_version"] == version
    assert extra["rows"] == DOCS and extra["rows_predicted"] == DOCS and extra["rows_reused"] == 0
    assert extra["previous_output"] is None and extra["content_digest"]
    _search_finds_each_document_itself(extra, vectors, frame.index.tolist())


def test_second_run_reembeds_only_the_edited_documents_and_copies_the_rest(story):
    first, second = story["runs"][:2]
    assert second["extra"]["previous_output"] == first["extra"]["output_uri"]
    assert second["extra"]["model_version"] == story["versions"][0]
    assert second["extra"]["rows_predicted"] == len(EDITED)
    assert second["extra"]["rows_reused"] == DOCS - len(EDITED)
    assert second["extra"]["content_digest"] != first["extra"]["content_digest"]

    before = first["vectors"].to_pandas().set_index("doc_id")
    after = second["vectors"].to_pandas().set_index("doc_id")
    assert len(after) == DOCS
    changed = [
        doc for doc in after.index if before.loc[doc, "content_hash"] != after.loc[doc, "content_hash"]
    ]
    assert sorted(changed) == EDITED
    unchanged = after.index.difference(EDITED)
    assert all(np.array_equal(before.loc[doc, "embedding"], after.loc[doc, "embedding"]) for doc in unchanged)
    edited = story["content"][1].set_index("doc_id").loc[EDITED, "text"].tolist()
    expected = _model_vectors(story["tracking_uri"], story["versions"][0], edited)
    assert np.allclose(np.stack(after.loc[EDITED, "embedding"].to_numpy()), expected, atol=1e-6)


def test_a_new_model_version_recomputes_every_document(story):
    first_version, second_version = story["versions"]
    second, third = story["runs"][1:]
    assert second_version != first_version
    assert third["extra"]["model_version"] == second_version
    assert third["extra"]["previous_output"] == second["extra"]["output_uri"]
    assert third["extra"]["rows_predicted"] == DOCS and third["extra"]["rows_reused"] == 0
    assert third["extra"]["recompute_reason"] == f"model version changed from {first_version}"

    after = third["vectors"].to_pandas().set_index("doc_id").loc[story["content"][1]["doc_id"]]
    expected = _model_vectors(story["tracking_uri"], second_version, story["content"][1]["text"].tolist())
    assert np.allclose(np.stack(after["embedding"].to_numpy()), expected, atol=1e-6)
