"""Incremental re-embedding in the infer job: unchanged rows are copied from the previous output, not
embedded again; a new model version recomputes all; a bad previous output is one line and no output.

The models are real ``mlflow.pyfunc.PythonModel`` s in a local registry; the embedder appends every text
it is asked to embed to the file ``$EMBEDDED_TEXTS`` names, which is how the tests see what was predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import infer
from airflow_ai_provider.runtime.contract.errors import JobInputError
from tests._support.text_models import DIM, LOG_VARIABLE, RecordingEmbedder, text_vector
from tests.unit.runtime.conftest import Registry


class NoiseEmbedder(mlflow.pyfunc.PythonModel):
    """Returns random vectors, new ones on every call: a model a search check must catch."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.random.default_rng().normal(size=(len(model_input), DIM))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """``doc-embedder`` at versions 1 and 2 (the same code) and ``noise-embedder`` at version 1."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from tests._support.churn_sample import mlflow_uris

    root = tmp_path_factory.mktemp("incremental-registry")
    registry = Registry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    signature = ModelSignature(inputs=Schema([ColSpec("string", "text")]))
    with mlflow_uris(registry.tracking_uri):
        experiment = mlflow.create_experiment("incremental", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            for name, model in (("doc-embedder", RecordingEmbedder()), ("doc-embedder", RecordingEmbedder()),
                                ("noise-embedder", NoiseEmbedder())):  # fmt: skip
                mlflow.pyfunc.log_model(
                    name=name, python_model=model, signature=signature, registered_model_name=name,
                    pip_requirements=[],
                )  # fmt: skip
    return registry


@pytest.fixture
def embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "embedded.txt"
    monkeypatch.setenv(LOG_VARIABLE, str(path))
    return path


def texts_embedded(path: Path) -> list[str]:
    texts = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return texts


def corpus(rows: int = 50, changed: dict[int, str] | None = None) -> pa.Table:
    texts = [f"document {i} about topic {i % 7}" for i in range(rows)]
    for row, text in (changed or {}).items():
        texts[row] = text
    return pa.table({"doc_id": pa.array(range(rows), pa.int64()), "text": texts})


def write(folder: Path, table: pa.Table, row_group_size: int | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "docs.parquet", row_group_size=row_group_size)
    return f"file://{folder / 'docs.parquet'}"


def run(
    models: Registry,
    source: str,
    output: Path,
    version: str = "1",
    model: str = "doc-embedder",
    **params: Any,
):
    params = {
        "id_columns": ["doc_id"], "content_columns": ["text"], "output_columns": ["embedding"], **params,
    }  # fmt: skip
    return infer.run(models.spec(model, source, output, version=version, params=params), log=print)


def read(folder: Path) -> pa.Table:
    return pq.read_table(folder / "part-00000-of-00001.parquet")


def test_a_second_run_with_3_of_50_rows_changed_embeds_only_those_and_equals_a_full_recompute(
    models, tmp_path, embedded
):
    first = run(models, write(tmp_path / "v1", corpus()), tmp_path / "out1")
    assert len(texts_embedded(embedded)) == 50
    assert first.details["recompute_reason"] == "first run"
    changed = {4: "a new text for four", 20: "twenty, rewritten", 49: "the last one changed"}
    source = write(tmp_path / "v2", corpus(changed=changed), row_group_size=16)

    second = run(models, source, tmp_path / "out2", previous_output=str(tmp_path / "out1"), batch_size=10)

    assert sorted(texts_embedded(embedded)) == sorted(changed.values())
    assert (second.metrics["rows_predicted"], second.metrics["rows_reused"]) == (3, 47)
    assert second.details["recompute_reason"] == "none"
    full = run(models, source, tmp_path / "full")
    assert read(tmp_path / "out2").equals(read(tmp_path / "full"))
    assert (
        second.details["content_digest"] == full.details["content_digest"] != first.details["content_digest"]
    )
    assert read(tmp_path / "out2").column_names == ["doc_id", "content_hash", "embedding"]


def test_a_new_model_version_recomputes_every_row_and_says_why(models, tmp_path, embedded):
    source = write(tmp_path / "in", corpus())
    run(models, source, tmp_path / "out1")
    texts_embedded(embedded)

    second = run(models, source, tmp_path / "out2", version="2", previous_output=str(tmp_path / "out1"))

    assert len(texts_embedded(embedded)) == 50
    assert (second.metrics["rows_predicted"], second.metrics["rows_reused"]) == (50, 0)
    assert second.details["recompute_reason"] == "model version changed from 1"
    footer = pq.read_metadata(tmp_path / "out2" / "part-00000-of-00001.parquet").metadata
    assert (footer[b"ai_provider.model"], footer[b"ai_provider.model_version"]) == (b"doc-embedder", b"2")


def test_the_same_input_twice_reuses_every_row_and_writes_the_same_rows(models, tmp_path, embedded):
    source = write(tmp_path / "in", corpus())
    first = run(models, source, tmp_path / "out")
    texts_embedded(embedded)
    before = read(tmp_path / "out")

    again = run(models, source, tmp_path / "out", previous_output=str(tmp_path / "out"))

    assert texts_embedded(embedded) == []
    assert (again.metrics["rows_predicted"], again.metrics["rows_reused"]) == (0, 50)
    assert read(tmp_path / "out").equals(before)
    assert again.details["content_digest"] == first.details["content_digest"]
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["part-00000-of-00001.parquet"]


def test_a_missing_previous_output_means_everything_is_computed_as_a_first_run(models, tmp_path, embedded):
    result = run(
        models, write(tmp_path / "in", corpus()), tmp_path / "out", previous_output=str(tmp_path / "none")
    )

    assert len(texts_embedded(embedded)) == 50
    assert (result.metrics["rows_predicted"], result.details["recompute_reason"]) == (50, "first run")


def test_a_previous_output_without_content_hashes_is_one_line_and_leaves_no_output(
    models, tmp_path, embedded
):
    source = write(tmp_path / "in", corpus())
    (tmp_path / "old").mkdir()
    pq.write_table(
        pa.table({"doc_id": [1], "embedding": [[0.0] * DIM]}),
        tmp_path / "old" / "part-00000-of-00001.parquet",
    )

    with pytest.raises(JobInputError) as caught:
        run(models, source, tmp_path / "out", previous_output=str(tmp_path / "old"))

    message = str(caught.value)
    assert message.startswith(
        f"previous_output file file://{tmp_path}/old/part-00000-of-00001.parquet lacks 'content_hash'"
    )
    assert "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert texts_embedded(embedded) == []


def test_a_previous_output_that_is_not_parquet_is_one_line_and_leaves_no_output(models, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "part-00000-of-00001.parquet").write_text("not parquet")

    with pytest.raises(JobInputError, match=r"^previous_output is not readable: .*not a Parquet file"):
        run(models, write(tmp_path / "in", corpus()), tmp_path / "out", previous_output=str(tmp_path / "old"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_vector_index_is_written_next_to_the_part_file_and_its_search_check_passes(models, tmp_path):
    import faiss

    source = write(tmp_path / "in", corpus(200))

    result = run(
        models, source, tmp_path / "out", vector_index="embedding", index_check_queries=12, batch_size=64
    )

    assert (result.metrics["index_rows"], result.metrics["index_check_hits"]) == (200, 12)
    index = faiss.read_index(str(tmp_path / "out" / "index-00000-of-00001.faiss"))
    ids = pq.read_table(tmp_path / "out" / "index-00000-of-00001.ids.parquet")
    assert index.ntotal == ids.num_rows == 200
    assert ids.column("doc_id").to_pylist() == list(range(200))
    written = np.stack(read(tmp_path / "out").column("embedding").to_numpy(zero_copy_only=False))
    texts = corpus(200).column("text").to_pylist()
    np.testing.assert_array_equal(written, np.vstack([text_vector(t) for t in texts]).astype(np.float32))
    query = text_vector(corpus(200).column("text")[37].as_py()).astype(np.float32)[None, :]
    faiss.normalize_L2(query)
    _, found = index.search(query, 1)
    assert ids.column("doc_id")[int(found[0, 0])].as_py() == 37
    assert sorted(entry["uri"].rsplit("/", 1)[-1] for entry in result.details["index_files"]) == [
        "index-00000-of-00001.faiss", "index-00000-of-00001.ids.parquet",
    ]  # fmt: skip


def test_noise_vectors_fail_the_search_check_in_one_line_and_leave_no_index_and_no_output(models, tmp_path):
    source = write(tmp_path / "in", corpus(100))

    with pytest.raises(JobInputError) as caught:
        run(models, source, tmp_path / "out", model="noise-embedder", vector_index="embedding")

    message = str(caught.value)
    assert message.startswith("vector index search check failed: ")
    assert "of 20 queries did not find their own row" in message and "\n" not in message
    assert not any((tmp_path / "out").iterdir())


def test_a_vector_index_of_a_column_that_is_not_a_vector_is_one_line(models, tmp_path):
    with pytest.raises(
        JobInputError, match=r"^vector_index column 'content_hash' is string, not a vector column"
    ):
        run(models, write(tmp_path / "in", corpus()), tmp_path / "out", vector_index="content_hash")
    assert not any((tmp_path / "out").iterdir())


def test_a_retry_replaces_the_index_files_and_removes_what_an_earlier_try_left(models, tmp_path):
    source = write(tmp_path / "in", corpus())
    run(models, source, tmp_path / "out", vector_index="embedding")
    stale = tmp_path / "out" / ".index-00000-of-00001.faiss.0123456789abcdef.tmp"
    stale.write_bytes(b"left by a killed try")

    run(models, source, tmp_path / "out", vector_index="embedding")

    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "index-00000-of-00001.faiss", "index-00000-of-00001.ids.parquet", "part-00000-of-00001.parquet",
    ]  # fmt: skip


def test_reused_rows_are_fetched_holding_at_most_two_previous_row_groups(models, tmp_path, monkeypatch):
    from airflow_ai_provider.runtime.vectors import previous as previous_module

    source = write(tmp_path / "in", corpus(400))
    run(models, source, tmp_path / "out1", batch_size=25)  # 16 row groups of 25 rows
    assert pq.ParquetFile(tmp_path / "out1" / "part-00000-of-00001.parquet").num_row_groups == 16
    held: list[int] = []
    original = previous_module.PreviousRows._row_group

    def tracked(self, group):
        table = original(self, group)
        held.append(len(self.cache))
        return table

    monkeypatch.setattr(previous_module.PreviousRows, "_row_group", tracked)

    result = run(models, source, tmp_path / "out2", previous_output=str(tmp_path / "out1"), batch_size=100)

    assert result.metrics["rows_reused"] == 400
    assert held and max(held) <= previous_module.CACHED_ROW_GROUPS
    assert read(tmp_path / "out2").to_pylist() == read(tmp_path / "out1").to_pylist()


def test_without_faiss_a_vector_index_fails_at_once_naming_the_runtime_extra(models, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # what an image without faiss-cpu gives: ImportError

    with pytest.raises(JobInputError) as caught:
        run(models, write(tmp_path / "in", corpus()), tmp_path / "out", vector_index="embedding")

    assert str(caught.value).startswith(
        "vector_index needs faiss, which is not installed in this environment"
    )
    assert "airflow-ai-provider[runtime]" in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_spec_with_previous_output_but_no_content_columns_is_refused_in_one_line(models, tmp_path):
    spec = models.spec(
        "doc-embedder", write(tmp_path / "in", corpus()), tmp_path / "out",
        params={"id_columns": ["doc_id"], "previous_output": str(tmp_path / "old")},
    )  # fmt: skip

    with pytest.raises(JobInputError, match=r"^previous_output needs id_columns and content_columns"):
        infer.run(spec, log=print)
