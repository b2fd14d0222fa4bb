"""The infer job with real pyfunc models: text in, vectors, strings and structs out; tensor inputs from
a list column or numeric columns; mismatches refused in one line with no output left."""

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
from airflow_ai_provider.runtime.batch_slices import SLICE_COPIES
from tests.unit.runtime.conftest import Registry, refused

DIM, WIDTH = 16, 8


def embed(texts: list[str]) -> np.ndarray:
    """A deterministic text embedding: character counts of the first 16 letters of the alphabet."""
    return np.array([[text.count(chr(ord("a") + i)) for i in range(DIM)] for text in texts], dtype=np.float64)


class TextEmbedder(mlflow.pyfunc.PythonModel):
    """A pyfunc: a ``text`` column in, a (rows, 16) float array out."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return embed(model_input["text"].tolist())


class TextLabeller(mlflow.pyfunc.PythonModel):
    """A pyfunc: a ``text`` column in, a label string and a dict per row out."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> dict[str, Any]:
        texts = model_input["text"].tolist()
        return {
            "label": ["long" if len(text) > 10 else "short" for text in texts],
            "info": [{"length": len(text), "first": text[:1]} for text in texts],
        }


class TensorSum(mlflow.pyfunc.PythonModel):
    """A pyfunc: a float32 (rows, 8) tensor in (refusing anything else), its row sums out."""

    def predict(self, context: Any, model_input: np.ndarray, params: Any = None) -> np.ndarray:
        assert isinstance(model_input, np.ndarray) and model_input.dtype == np.float32, type(model_input)
        return model_input.sum(axis=1)


class ArrayMean(mlflow.pyfunc.PythonModel):
    """A pyfunc: a ``values`` column of float arrays in, each row's mean out."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.array([np.mean(values) for values in model_input["values"]])


def _log(name: str, model: mlflow.pyfunc.PythonModel, signature: Any) -> None:
    mlflow.pyfunc.log_model(
        name=name, python_model=model, signature=signature, registered_model_name=name, pip_requirements=[]
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """``text-embedder``, ``text-labeller`` (column signature with one ``string`` input) and
    ``tensor-sum`` (a float32 tensor signature of shape (-1, 8)) and ``array-mean`` (an
    ``Array(double)`` column), each at version 1."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema, TensorSpec

    from tests._support.churn_sample import mlflow_uris

    root = tmp_path_factory.mktemp("vector-registry")
    registry = Registry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    text = Schema([ColSpec("string", "text")])
    tensor = Schema([TensorSpec(np.dtype(np.float32), (-1, WIDTH))])
    with mlflow_uris(registry.tracking_uri):
        experiment = mlflow.create_experiment("vectors", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            _log("text-embedder", TextEmbedder(), ModelSignature(inputs=text))
            _log("text-labeller", TextLabeller(), ModelSignature(inputs=text))
            _log("tensor-sum", TensorSum(), ModelSignature(inputs=tensor))
            _log(
                "array-mean",
                ArrayMean(),
                ModelSignature(inputs=Schema([ColSpec(Array(DataType.double), "values")])),
            )
    return registry


def corpus(rows: int = 50) -> pa.Table:
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    texts = [" ".join(words[(i + j) % 5] for j in range(i % 4 + 1)) for i in range(rows)]
    return pa.table({"doc_id": pa.array(range(rows), pa.int64()), "text": pa.array(texts, pa.large_string())})


def vectors(rows: int = 40) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(rows, WIDTH)).astype(np.float32)


def write(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return f"file://{path}"


def spec(models: Registry, name: str, source: str, output: Path, **params: Any) -> Any:
    return models.spec(name, source, output, params={"id_columns": ["doc_id"], **params})


def test_a_text_model_returning_a_matrix_writes_one_fixed_size_list_embedding_column(models, tmp_path):
    table = corpus()
    source = write(tmp_path / "in" / "docs.parquet", table)

    result = infer.run(spec(models, "text-embedder", source, tmp_path / "out", output_columns=["embedding"]))

    written = pq.read_table(tmp_path / "out")
    assert result.rows_out == 50
    assert written.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert written.column_names == ["doc_id", "embedding"]
    stored = np.array(written.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(stored, embed(table.column("text").to_pylist()).astype(np.float32))


def test_string_and_struct_outputs_read_back_with_their_types(models, tmp_path):
    source = write(tmp_path / "in" / "docs.parquet", corpus(20))

    infer.run(spec(models, "text-labeller", source, tmp_path / "out"))

    written = pq.read_table(tmp_path / "out")
    assert pa.types.is_string(written.schema.field("prediction_label").type)
    info = written.schema.field("prediction_info").type
    assert info == pa.struct([("length", pa.int64()), ("first", pa.string())])
    first = written.slice(0, 1).to_pylist()[0]
    assert first["prediction_info"] == {"length": 5, "first": "a"}
    assert first["prediction_label"] == "short"


def test_a_tensor_model_is_fed_from_a_fixed_size_list_column(models, tmp_path):
    matrix = vectors()
    column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), WIDTH)
    source = write(tmp_path / "in" / "v.parquet", pa.table({"doc_id": range(40), "vector": column}))

    infer.run(spec(models, "tensor-sum", source, tmp_path / "out", output_columns="total"))

    written = pq.read_table(tmp_path / "out")
    np.testing.assert_allclose(written.column("total").to_numpy(), matrix.sum(axis=1), rtol=1e-6)


def test_a_tensor_model_is_fed_from_a_variable_list_column_of_the_right_width(models, tmp_path):
    matrix = vectors()
    column = pa.array(matrix.tolist(), pa.list_(pa.float32()))
    source = write(tmp_path / "in" / "v.parquet", pa.table({"doc_id": range(40), "vector": column}))

    infer.run(spec(models, "tensor-sum", source, tmp_path / "out"))

    written = pq.read_table(tmp_path / "out")
    np.testing.assert_allclose(written.column("prediction").to_numpy(), matrix.sum(axis=1), rtol=1e-6)


def test_a_tensor_model_is_fed_from_numeric_columns(models, tmp_path):
    matrix = vectors()
    columns = {f"v{i}": pa.array(matrix[:, i]) for i in range(WIDTH)}
    source = write(tmp_path / "in" / "v.parquet", pa.table({"doc_id": range(40), **columns}))

    infer.run(spec(models, "tensor-sum", source, tmp_path / "out"))

    written = pq.read_table(tmp_path / "out")
    np.testing.assert_allclose(written.column("prediction").to_numpy(), matrix.sum(axis=1), rtol=1e-6)


def _no_output(folder: Path) -> bool:
    return not folder.exists() or not any(folder.rglob("*.parquet"))


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            pa.table({"doc_id": [0], "vector": pa.array([[1.0] * 6], pa.list_(pa.float32(), 6))}),
            "column 'vector' has 6 values a row, the model takes 8",
        ),
        (
            pa.table({"doc_id": [0], "vector": pa.array([[1.0] * 8], pa.list_(pa.float64(), 8))}),
            "column 'vector' holds double values; write it as a list of float32",
        ),
        (
            pa.table({"doc_id": [0], **{f"v{i}": pa.array([1.0], pa.float32()) for i in range(5)}}),
            "5 feature column(s) for 8 values a row; give 8 numeric columns or one list column of 8 values",
        ),
        (
            pa.table({"doc_id": [0], **{f"v{i}": pa.array(["x"]) for i in range(WIDTH)}}),
            "column(s) 'v0' (string)",
        ),
        (
            pa.table({"doc_id": [0, 1], "vector": pa.array([[1.0] * 8, [1.0] * 7], pa.list_(pa.float32()))}),
            "column 'vector' has rows of 7 values: the model takes a float32 tensor of shape (-1, 8), 8 values a row",
        ),
    ],
    ids=["width", "element-type", "column-count", "column-type", "ragged-rows"],
)
def test_a_tensor_input_mismatch_is_one_line_naming_the_column_and_leaves_no_output(
    models, tmp_path, table, expected
):
    source = write(tmp_path / "in" / "v.parquet", table)

    message = refused(infer, spec(models, "tensor-sum", source, tmp_path / "out"))

    assert expected in message
    assert _no_output(tmp_path / "out")


def test_a_non_text_column_for_a_text_model_is_one_line_and_leaves_no_output(models, tmp_path):
    source = write(tmp_path / "in" / "docs.parquet", pa.table({"doc_id": [0, 1], "text": [1, 2]}))

    message = refused(infer, spec(models, "text-embedder", source, tmp_path / "out"))

    assert "column 'text' is long, model expects string" in message
    assert _no_output(tmp_path / "out")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["doc_id"], "output column(s) 'doc_id' clash with the id columns"),
        (
            ["embedding", "extra"],
            "output_columns gives 2 name(s) ('embedding', 'extra') but the model returned",
        ),
        (
            {"vector": "embedding"},
            "output_columns names model output(s) 'vector' that the model did not return",
        ),
    ],
    ids=["clash", "count", "unknown"],
)
def test_output_columns_that_do_not_fit_the_model_fail_before_any_output_is_written(
    models, tmp_path, names, expected
):
    source = write(tmp_path / "in" / "docs.parquet", corpus(10))

    message = refused(infer, spec(models, "text-embedder", source, tmp_path / "out", output_columns=names))

    assert expected in message
    assert _no_output(tmp_path / "out")


def test_an_array_column_signature_takes_a_list_column(models, tmp_path):
    lists = pa.array([[1.0, 3.0], [2.0], [4.0, 5.0, 6.0]], pa.list_(pa.float64()))
    source = write(tmp_path / "in" / "a.parquet", pa.table({"doc_id": range(3), "values": lists}))

    infer.run(spec(models, "array-mean", source, tmp_path / "out", output_columns="mean"))

    assert pq.read_table(tmp_path / "out").column("mean").to_pylist() == [2.0, 2.0, 5.0]


def test_an_array_column_signature_refuses_a_list_of_strings_in_one_line(models, tmp_path):
    source = write(tmp_path / "in" / "a.parquet", pa.table({"doc_id": [0], "values": [["x"]]}))

    message = refused(infer, spec(models, "array-mean", source, tmp_path / "out"))

    assert "column 'values' holds string values, model expects an array of double" in message
    assert _no_output(tmp_path / "out")


def test_output_columns_select_and_rename_the_predict_proba_columns(registry, tmp_path):
    from tests.unit.runtime.conftest import customers, write_parquet

    source = write_parquet(tmp_path / "in.parquet", customers(30))
    params = {"output_columns": {"prediction": "label", "confidence": "score"}}

    infer.run(registry.spec("churn", str(source), tmp_path / "out", params=params), log=lambda _: None)

    written = pq.read_table(tmp_path / "out")
    assert written.column_names == ["customer_id", "label", "score"]
    assert set(written.column("label").to_pylist()) <= {"churn", "stay"}


def test_output_columns_naming_a_predict_proba_column_that_does_not_exist_is_refused(registry, tmp_path):
    from tests.unit.runtime.conftest import customers, write_parquet

    source = write_parquet(tmp_path / "in.parquet", customers(30))
    spec_ = registry.spec("churn", str(source), tmp_path / "out", params={"output_columns": {"score": "s"}})

    message = refused(infer, spec_)

    assert message.startswith("output_columns names model output(s) 'score' that the model did not return")
    assert "'prediction', 'confidence', 'proba_churn', 'proba_stay'" in message
    assert _no_output(tmp_path / "out")


def wide_corpus(rows: int) -> pa.Table:
    """Short texts (a few bytes each), so the model's 16 float32s a row are wider than its input."""
    return pa.table(
        {"doc_id": pa.array(range(rows), pa.int64()), "text": [f"ab{i % 7}" for i in range(rows)]}
    )


def test_vector_outputs_wider_than_their_input_are_predicted_in_slices_within_batch_memory_mb(
    models, tmp_path
):
    source = write(tmp_path / "in" / "docs.parquet", wide_corpus(60_000))
    budget_mb = 1

    infer.run(
        spec(
            models, "text-embedder", source, tmp_path / "out", output_columns=["embedding"], batch_memory_mb=1
        )
    )

    part = pq.ParquetFile(next((tmp_path / "out").glob("part-*.parquet")))
    groups = [part.metadata.row_group(i).num_rows for i in range(part.num_row_groups)]
    assert sum(groups) == 60_000
    written = part.read()
    row_bytes = written.nbytes / written.num_rows  # ids, embedding (the input's text is not kept)
    largest = max(groups)
    assert largest * row_bytes * SLICE_COPIES <= budget_mb << 20, (groups, row_bytes)
    assert written.column("doc_id").to_pylist() == list(range(60_000))  # slices keep the row order
    stored = np.array(written.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(
        stored, embed(wide_corpus(60_000).column("text").to_pylist()).astype(np.float32)
    )


def test_an_explicit_batch_size_is_predicted_whole_even_when_the_outputs_are_wide(models, tmp_path):
    source = write(tmp_path / "in" / "docs.parquet", wide_corpus(20_000))

    infer.run(
        spec(
            models,
            "text-embedder",
            source,
            tmp_path / "out",
            output_columns=["embedding"],
            batch_memory_mb=1,
            batch_size=20_000,
        )
    )

    part = pq.ParquetFile(next((tmp_path / "out").glob("part-*.parquet")))
    assert [part.metadata.row_group(i).num_rows for i in range(part.num_row_groups)] == [20_000]
