"""One input batch scored into output rows: content hashes added, unchanged rows copied from an earlier output.

Without ``content_columns`` a batch's output is its id columns and the model's columns, as before.
With them, ``content_hash`` follows the id columns, and every row's key (ids and content hash) goes
into the shard's ``content_digest``. With a reusable ``previous_output`` only the changed rows are
predicted; the unchanged ones take the previous output's model columns, and the batch keeps its
input order, so the output equals a full recompute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from airflow_ai_provider.runtime import Log
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.params import CONTENT_HASH_COLUMN, InferParams
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.vectors.content import ContentDigest, content_hashes, row_keys
from airflow_ai_provider.runtime.vectors.index import VectorIndex
from airflow_ai_provider.runtime.vectors.previous import FIRST_RUN, PreviousRows, open_previous

Columns = list[tuple[str, pa.Array]]
Predict = Callable[[pa.RecordBatch], Columns]


class RowScorer:
    """Builds each output batch from an input batch and a ``predict`` function (see the module docstring).

    :param previous: the earlier output's rows when they can be reused (:func:`~.previous.open_previous`).
    :param index: a :class:`~.index.VectorIndex` fed with every output batch, or ``None``.
    """

    def __init__(
        self,
        params: InferParams,
        previous: PreviousRows | None = None,
        index: VectorIndex | None = None,
        reason: str = FIRST_RUN,
    ) -> None:
        self.id_columns = list(params.id_columns)
        self.content_columns = list(params.content_columns)
        self.previous = previous
        self.index = index
        self.reason = reason
        self.digest = ContentDigest() if self.content_columns else None
        self.rows_predicted = 0
        self.rows_reused = 0
        self.index_files: list[dict[str, Any]] = []

    @classmethod
    def start(cls, spec: JobSpec, params: InferParams, log: Log) -> RowScorer:
        """The shard's scorer, before the model loads: the previous output is indexed, and faiss
        found, first, so that a bad ``previous_output`` or a missing faiss fails at once."""
        index = None
        if params.vector_index:
            index = VectorIndex(
                params.vector_index,
                params.id_columns,
                bool(params.content_columns),
                params.index_check_queries,
            )
        previous, reason = open_previous(spec, params, log)
        return cls(params, previous, index, reason)

    def score(self, batch: pa.RecordBatch, predict: Predict) -> pa.RecordBatch:
        """The output batch of ``batch``, in its row order."""
        ids = [(name, batch.column(name)) for name in self.id_columns]
        if self.digest is not None:
            ids.append((CONTENT_HASH_COLUMN, content_hashes(batch, self.content_columns)))
        base = pa.RecordBatch.from_arrays([array for _, array in ids], names=[name for name, _ in ids])
        keys = np.empty((0, 4), dtype=np.uint64)
        if self.digest is not None:
            keys = row_keys(base, self.id_columns, CONTENT_HASH_COLUMN)
            self.digest.update(keys)
        reused, previous = (None, None)
        if self.previous is not None and batch.num_rows:
            reused, previous = self.previous.reuse(base, keys)
        if reused is None or previous is None:
            output = _joined(base, predict(batch))
            self.rows_predicted += batch.num_rows
        else:
            output = self._combined(batch, base, reused, previous, predict)
        if self.index is not None:
            self.index.add(output, batch)
        return output

    def _combined(
        self,
        batch: pa.RecordBatch,
        base: pa.RecordBatch,
        reused: np.ndarray,
        previous: pa.Table,
        predict: Predict,
    ) -> pa.RecordBatch:
        copied = pa.Table.from_batches([base.filter(pa.array(reused))])
        for name in previous.column_names:
            copied = copied.append_column(name, previous.column(name))
        self.rows_reused += int(reused.sum())
        if reused.all():
            return copied.combine_chunks().to_batches()[0]
        changed = ~reused
        predicted = pa.Table.from_batches(
            [_joined(base.filter(pa.array(changed)), predict(batch.filter(pa.array(changed))))]
        )
        self.rows_predicted += int(changed.sum())
        if predicted.column_names != copied.column_names:
            raise JobInputError(
                f"previous_output has the columns {copied.column_names} but this run writes "
                f"{predicted.column_names}: point previous_output at an output with the same output columns"
            )
        try:
            copied = copied.cast(predicted.schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
            raise JobInputError(
                f"previous_output's columns have other types than this run's ({one_line(err)}): point "
                "previous_output at an output written with the same vector_type and output_columns"
            ) from None
        order = np.concatenate([np.flatnonzero(changed), np.flatnonzero(reused)])
        table = pa.concat_tables([predicted, copied]).take(pa.array(np.argsort(order, kind="stable")))
        return table.combine_chunks().to_batches()[0]

    def check_index(self, predict: Predict, log: Log) -> None:
        """The vector index's search check, before anything is published."""
        if self.index is not None and self.index.rows:
            hits = self.index.check(predict)
            log(
                f"vector index of {self.index.rows} rows: {hits} of {hits} search check queries found their own row"
            )

    def publish_index(self, output_uri: str, part: str, scratch_dir: str | None, log: Log) -> None:
        """Publish the vector index files next to the part file ``part`` (after it)."""
        if self.index is not None:
            for entry in self.index.publish(output_uri, part, scratch_dir):
                self.index_files.append(
                    {"uri": entry.uri, "rows": entry.rows, "bytes": entry.bytes, "sha256": entry.sha256}
                )
                log(f"wrote {entry.uri} ({entry.bytes} bytes)")

    def metrics(self) -> dict[str, float]:
        """``rows_predicted``, ``rows_reused`` and, with a vector index, ``index_rows`` and ``index_check_hits``."""
        metrics = {"rows_predicted": self.rows_predicted, "rows_reused": self.rows_reused}
        if self.index is not None:
            metrics.update(index_rows=self.index.rows, index_check_hits=self.index.hits)
        return metrics

    def details(self) -> dict[str, Any]:
        """The result's ``details``: counts, ``recompute_reason``, ``content_digest``, the index files."""
        details: dict[str, Any] = dict(self.metrics())
        if self.digest is not None:
            details.update(content_digest=self.digest.hexdigest(), recompute_reason=self.reason)
        if self.index_files:
            details["index_files"] = self.index_files
        return details


def kept_columns(params: InferParams, signature: Any) -> list[str]:
    """The input columns kept besides the model's: the id columns, and the content columns that are
    not inputs of a signature with names (without one, every non-id column is a model input)."""
    inputs: set[str] = set()
    if signature is not None and not signature.is_tensor_spec() and signature.has_input_names():
        inputs = {spec.name for spec in signature.inputs}  # MLflow's schema and the light one
    else:
        return list(params.id_columns)
    return [*params.id_columns, *(name for name in params.content_columns if name not in inputs)]


def check_content_columns(params: InferParams, names: list[str], where: str) -> None:
    """Fail when a content column is not in the input ``where``."""
    missing = [name for name in params.content_columns if name not in names]
    if missing:
        raise JobInputError(
            f"content column(s) {', '.join(map(repr, missing))} of content_columns not in input {where}: "
            f"name columns of the input (it has {', '.join(names[:20])})"
        )


def _joined(base: pa.RecordBatch, predicted: Columns) -> pa.RecordBatch:
    """The id (and content hash) columns followed by the predicted ones."""
    arrays = [*base.columns, *(array for _, array in predicted)]
    names = [*base.schema.names, *(name for name, _ in predicted)]
    return pa.RecordBatch.from_arrays(arrays, names=names)
