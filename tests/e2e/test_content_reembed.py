"""The content templates as one system, through the real Airflow scheduler (``airflow standalone``,
the templates as DAG folder, local execution mode) and a real ``mlflow server``, on a local data root.

Training the text embedder (triggered through the REST API, as from the UI) promotes it, and the
promotion's model Asset event starts ``content_reembed`` by itself, which embeds every document
with exactly that version. Then a few documents are edited and the content Asset is updated through
the REST API (as an upstream system announces new content): the run it starts re-embeds only those.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests._support.stack import follow_new_run, run_ids, start_stack

DOCS = 300
EDITED = ["D000007", "D000120", "D000299"]
DAGS = ("content_embedder_train", "content_reembed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("content"), dags=DAGS)
    try:
        yield running
    finally:
        running.stop()


def _write_content(stack, frame) -> Path:
    folder = stack.data / "content" / "documents"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / "documents.parquet", index=False)
    return folder


def _vectors_event(stack, run: dict) -> dict:
    """The extra of the one vectors event the ``content_reembed`` run emitted."""
    query = f"/assets/events?source_dag_id=content_reembed&source_run_id={quote(run['dag_run_id'], safe='')}"
    (event,) = stack.airflow.api("GET", query)["asset_events"]
    return event["extra"]


def _read_vectors(extra: dict) -> pa.Table:
    return pa.concat_tables(pq.read_table(uri.removeprefix("file://")) for uri in extra["output_files"])


@pytest.fixture(scope="module")
def chain(stack) -> dict:
    """Train -> promotion -> re-embed everything; edit a few documents -> content event -> re-embed."""
    from dag_templates.include.text_embedding import generate_corpus

    corpus = generate_corpus(DOCS, seed=21)
    _write_content(stack, corpus)
    api = stack.airflow.api
    known = {dag_id: run_ids(stack, dag_id) for dag_id in DAGS}
    api("POST", "/dags/content_embedder_train/dagRuns", {"logical_date": None})
    trained = follow_new_run(stack, "content_embedder_train", known["content_embedder_train"], "manual")
    first = follow_new_run(stack, "content_reembed", known["content_reembed"], "asset_triggered")

    revised = generate_corpus(DOCS, seed=21, revision=1).set_index("doc_id")["text"]
    edited = corpus.copy()
    mask = edited["doc_id"].isin(EDITED)
    edited.loc[mask, "text"] = edited.loc[mask, "doc_id"].map(revised)
    _write_content(stack, edited)
    found = api("GET", "/assets?name_pattern=content_documents")[
        "assets"
    ]  # a pattern: s3_content_documents too
    (asset,) = [each for each in found if each["name"] == "content_documents"]
    known_now = run_ids(stack, "content_reembed")
    api("POST", "/assets/events", {"asset_id": asset["id"], "extra": {"edited": len(EDITED)}})
    second = follow_new_run(stack, "content_reembed", known_now, "asset_triggered")
    return {"trained": trained, "first": first, "second": second}


def test_a_promoted_embedding_model_starts_the_re_embedding_of_every_document_with_its_version(stack, chain):
    assert chain["trained"]["state"] == "success"
    assert chain["first"]["state"] == "success"
    path = f"/dags/content_reembed/dagRuns/{quote(chain['first']['dag_run_id'], safe='')}/upstreamAssetEvents"
    (trigger,) = stack.airflow.api("GET", path)["asset_events"]
    assert (
        trigger["uri"] == "mlflow-model://text_embedder"
        and trigger["source_dag_id"] == "content_embedder_train"
    )
    assert trigger["source_run_id"] == chain["trained"]["dag_run_id"]
    extra = _vectors_event(stack, chain["first"])
    assert extra["model_version"] == trigger["extra"]["model_version"]
    assert extra["rows"] == DOCS and extra["rows_predicted"] == DOCS and extra["rows_reused"] == 0
    table = _read_vectors(extra)
    kind = table.schema.field("embedding").type
    assert table.num_rows == DOCS and pa.types.is_fixed_size_list(kind) and kind.value_type == pa.float32()


def test_a_content_event_after_a_few_edits_re_embeds_only_the_edited_documents(stack, chain):
    assert chain["second"]["state"] == "success"
    first, second = _vectors_event(stack, chain["first"]), _vectors_event(stack, chain["second"])
    assert second["previous_output"] == first["output_uri"]
    assert second["model_version"] == first["model_version"]
    assert second["rows_predicted"] == len(EDITED) and second["rows_reused"] == DOCS - len(EDITED)
    assert second["content_digest"] != first["content_digest"]
    assert _read_vectors(second).num_rows == DOCS
