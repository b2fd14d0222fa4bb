"""The vector index normalises its own copy of the vectors: the output column keeps the model's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from airflow_ai_provider.runtime.vectors.index import VectorIndex, vectors_of


def _output(vectors: np.ndarray) -> pa.RecordBatch:
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel().copy()), vectors.shape[1])
    return pa.RecordBatch.from_arrays(
        [pa.array([f"d{i}" for i in range(len(vectors))]), column], ["id", "vec"]
    )


def test_indexing_a_batch_leaves_the_output_vectors_unchanged():
    vectors = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)  # not unit length
    output = _output(vectors)
    index = VectorIndex("vec", ["id"], with_hash=False, queries=2)
    index.add(output, output)
    written = output.column("vec").flatten().to_numpy().reshape(6, 4)
    assert np.array_equal(written, vectors)


def test_vectors_of_returns_a_writable_copy():
    output = _output(np.ones((2, 3), dtype=np.float32))
    matrix = vectors_of(output.column("vec"), "vec")
    matrix[:] = 0
    assert output.column("vec").flatten().to_numpy().tolist() == [1.0] * 6
