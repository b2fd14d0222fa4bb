"""The vector index of an output column: FAISS over L2-normalised vectors, its search check, its publication.

The shard's vectors go into a ``faiss.IndexFlatIP`` as they are written: inner product over
L2-normalised vectors is cosine similarity, searched exactly; it holds ``4 * dimension`` bytes a row
(1M rows of 384 floats: 1.5 GB) and searches in time linear in the rows, fine up to about 1M rows
a shard (more rows: more shards). Before anything is published, :meth:`VectorIndex.check` embeds
``index_check_queries`` input rows again, sampled uniformly over the shard (a seeded reservoir), and
requires each one's top hit to be its own row (or a row of the same content hash). Then
``index-<shard>.ids.parquet`` (row ``i`` holds the ids of vector ``i``) and ``index-<shard>.faiss``
are published next to the part file, each atomically, ids first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import CONTENT_HASH_COLUMN
from airflow_ai_provider.runtime.contract.spec import OutputFile

#: Similarity below the top hit's that still counts as a tie with it (float rounding).
TIE_TOLERANCE = 1e-4
ROW_COLUMN = "row"


def load_faiss() -> Any:
    """The ``faiss`` module, or one line naming the extra that installs it."""
    try:
        import faiss
    except ImportError:
        raise JobInputError(
            "vector_index needs faiss, which is not installed in this environment: install "
            "airflow-ai-provider[runtime] (it includes faiss-cpu) in the runtime image, or leave vector_index out"
        ) from None
    return faiss


def index_names(part: str) -> tuple[str, str]:
    """The index file and its ids file for the part file named ``part``."""
    stem = "index-" + part.removeprefix("part-").removesuffix(".parquet")
    return f"{stem}.faiss", f"{stem}.ids.parquet"


def vectors_of(column: pa.Array, name: str) -> np.ndarray:
    """A list or fixed-size-list column of floats as a C-contiguous float32 ``(rows, dimension)`` matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    lists = pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)
    if not lists or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise JobInputError(
            f"vector_index column {name!r} is {kind}, not a vector column: name an output column of "
            "vectors (a list of floats per row)"
        )
    if column.null_count:
        raise JobInputError(f"vector_index column {name!r} has {column.null_count} missing vectors")
    lengths = np.asarray(column.value_lengths()) if not pa.types.is_fixed_size_list(kind) else None
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        raise JobInputError(
            f"vector_index column {name!r} has vectors of different lengths: {sorted(set(lengths.tolist()))[:5]}"
        )
    width = kind.list_size if lengths is None else (int(lengths[0]) if len(lengths) else 0)
    flat = column.flatten().to_numpy(zero_copy_only=False)
    # A copy: the index normalises it in place, and a view would change the output column's vectors.
    return np.array(flat, dtype=np.float32).reshape(len(column), width)


class VectorIndex:
    """The shard's vectors of ``column`` indexed as they are written (see the module docstring)."""

    def __init__(
        self, column: str, id_columns: list[str], with_hash: bool, queries: int, seed: int = 0
    ) -> None:
        self.faiss = load_faiss()
        self.column = column
        self.kept = [*id_columns, *([CONTENT_HASH_COLUMN] if with_hash else [])]
        self.with_hash = with_hash
        self.queries = queries
        self.rng = np.random.default_rng(seed)
        self.index: Any = None
        self.ids: list[pa.RecordBatch] = []
        self.slots: list[tuple[int, pa.RecordBatch]] = []
        self.rows = 0
        self.hits = 0

    def add(self, output: pa.RecordBatch, batch: pa.RecordBatch) -> None:
        """Index ``output``'s vectors and keep a uniform sample of ``batch``'s input rows as queries."""
        if self.column not in output.schema.names:
            raise JobInputError(
                f"vector_index {self.column!r} is not an output column (the output has "
                f"{', '.join(output.schema.names)}): name the vector column"
            )
        matrix = vectors_of(output.column(self.column), self.column)
        if self.index is None:
            self.index = self.faiss.IndexFlatIP(matrix.shape[1])
        elif matrix.shape[1] != self.index.d:
            raise JobInputError(
                f"vector_index column {self.column!r} has vectors of {self.index.d} and {matrix.shape[1]} dimensions"
            )
        self.faiss.normalize_L2(matrix)
        self.index.add(matrix)
        rows = pa.array(np.arange(self.rows, self.rows + output.num_rows, dtype=np.int64))
        self.ids.append(
            pa.RecordBatch.from_arrays(
                [rows, *(output.column(name) for name in self.kept)], names=[ROW_COLUMN, *self.kept]
            )
        )
        self._sample(batch)
        self.rows += output.num_rows

    def _sample(self, batch: pa.RecordBatch) -> None:
        """Reservoir sampling (algorithm R): each row seen so far is a query with equal chance."""
        positions = np.arange(self.rows, self.rows + batch.num_rows)
        for i in np.flatnonzero(positions < self.queries):
            self.slots.append((int(positions[i]), batch.take(pa.array([i]))))
        later = positions >= self.queries
        if later.any():
            draws = self.rng.integers(0, positions[later] + 1)
            for i, slot in zip(
                np.flatnonzero(later)[draws < self.queries], draws[draws < self.queries], strict=True
            ):
                self.slots[slot] = (int(positions[i]), batch.take(pa.array([i])))

    def check(self, predict: Callable[[pa.RecordBatch], list[tuple[str, pa.Array]]]) -> int:
        """Embed the sampled rows again, search, and fail unless each finds itself; the hits."""
        if not self.slots or self.index is None:
            return 0
        own = np.array([position for position, _ in self.slots], dtype=np.int64)
        queries = pa.concat_tables(
            [pa.Table.from_batches([row]) for _, row in self.slots], promote_options="permissive"
        )
        predicted = dict(predict(queries.combine_chunks().to_batches()[0]))
        if self.column not in predicted:
            raise JobInputError(
                f"vector_index {self.column!r} is not among the model's columns {list(predicted)}"
            )
        matrix = vectors_of(predicted[self.column], self.column)
        self.faiss.normalize_L2(matrix)
        similarity, found = self.index.search(matrix, 1)
        stored = np.vstack([self.index.reconstruct(int(position)) for position in own])
        own_similarity = (stored * matrix).sum(axis=1)
        hit = (found[:, 0] == own) | (own_similarity >= similarity[:, 0] - TIE_TOLERANCE)
        ids = pa.Table.from_batches(self.ids)
        if self.with_hash:
            hashes = ids.column(CONTENT_HASH_COLUMN)
            hit |= np.array([hashes[int(a)] == hashes[int(b)] for a, b in zip(found[:, 0], own, strict=True)])
        missed = np.flatnonzero(~hit)
        if len(missed):
            first = missed[0]
            example = ids.slice(int(own[first]), 1).to_pylist()[0]
            top = ids.slice(int(found[first, 0]), 1).to_pylist()[0] if found[first, 0] >= 0 else None
            raise JobInputError(
                f"vector index search check failed: {len(missed)} of {len(own)} queries did not find their own "
                f"row as the top hit (e.g. {example} found {top}, similarity {similarity[first, 0]:.3f} against "
                f"{own_similarity[first]:.3f} for itself): the model gives other vectors for the same content; "
                "use a deterministic embedding model or leave vector_index out"
            )
        self.hits = len(own)
        return self.hits

    def publish(self, output_uri: str, part: str, scratch_dir: str | None) -> list[OutputFile]:
        """Publish the ids file, then the index file, each atomically; their output entries."""
        if self.index is None:
            return []
        index_name, ids_name = index_names(part)
        writer = storage.PartWriter(output_uri, ids_name, scratch_dir)
        try:
            for batch in self.ids:
                writer.write(batch)
            ids_file = writer.publish()
        except BaseException:
            writer.discard()
            raise
        return [
            entry for entry in (ids_file, self._publish_index(output_uri, index_name, scratch_dir)) if entry
        ]

    def _publish_index(self, output_uri: str, name: str, scratch_dir: str | None) -> OutputFile:
        """Write the index to the part writer's temporary file and publish it the same way: earlier
        tries' temporary files and incomplete uploads removed first, renamed or uploaded atomically."""
        writer = storage.PartWriter(output_uri, name, scratch_dir)
        try:
            self.faiss.write_index(self.index, writer.temp_path)
            return writer.publish_file(self.rows)
        except BaseException:
            writer.discard()
            raise
