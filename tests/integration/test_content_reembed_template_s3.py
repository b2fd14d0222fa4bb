"""The content templates on object storage: with an ``s3://`` data root (a real moto server, reached
only through the templates' AWS connection) and a real ``mlflow server``, ``dag.test()`` trains the
embedder on a corpus in the bucket, embeds it into vectors and a FAISS index in the bucket, and a
second run after an edit reuses the previous output read from S3."""

from __future__ import annotations

from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from tests._support.airflow_records import asset_event
from tests.dags.adapted_template_dags import S3_CONTENT_ROOT, s3_content_embedder_train, s3_content_reembed

DOCS = 120
EDITED = ["D000010", "D000077"]


def _write(s3_server, frame) -> None:
    bucket, key = urlsplit(S3_CONTENT_ROOT).netloc, urlsplit(S3_CONTENT_ROOT).path.strip("/")
    body = frame.to_parquet(index=False)
    s3_server.client().put_object(Bucket=bucket, Key=f"{key}/content/documents/documents.parquet", Body=body)


def _keys(s3_server, prefix: str) -> list[str]:
    bucket, key = urlsplit(prefix).netloc, urlsplit(prefix).path.strip("/")
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"{key}/")
    return sorted(item["Key"][len(key) + 1 :] for item in listing.get("Contents", []))


def _vectors(s3_server, uri: str) -> pa.Table:
    bucket, key = urlsplit(uri).netloc, urlsplit(uri).path.strip("/")
    body = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(pa.BufferReader(body))


def test_content_templates_on_an_s3_data_root_embed_and_reuse_vectors_in_the_bucket(s3_root, s3_server):
    from dag_templates.include.text_embedding import generate_corpus

    assert urlsplit(s3_root).netloc == urlsplit(S3_CONTENT_ROOT).netloc
    corpus = generate_corpus(DOCS, seed=8)
    _write(s3_server, corpus)
    assert s3_content_embedder_train().test().state == "success"

    reembed = s3_content_reembed()
    first = reembed.test()
    assert first.state == "success"
    uri, extra = asset_event("s3_content_vectors", first.run_id)
    assert uri == f"{S3_CONTENT_ROOT}/vectors"
    assert extra["output_uri"].startswith(f"{S3_CONTENT_ROOT}/vectors/")
    assert _keys(s3_server, extra["output_uri"]) == [
        "index-00000-of-00001.faiss",
        "index-00000-of-00001.ids.parquet",
        "part-00000-of-00001.parquet",
    ]
    assert extra["rows_predicted"] == DOCS

    revised = generate_corpus(DOCS, seed=8, revision=1).set_index("doc_id")["text"]
    mask = corpus["doc_id"].isin(EDITED)
    corpus.loc[mask, "text"] = corpus.loc[mask, "doc_id"].map(revised)
    _write(s3_server, corpus)
    second = reembed.test()
    assert second.state == "success"
    _, again = asset_event("s3_content_vectors", second.run_id)
    assert again["previous_output"] == extra["output_uri"]
    assert again["rows_predicted"] == len(EDITED) and again["rows_reused"] == DOCS - len(EDITED)
    table = _vectors(s3_server, again["output_files"][0])
    assert table.num_rows == DOCS and pa.types.is_fixed_size_list(table.schema.field("embedding").type)
