"""Uniqueness expectations judged exactly over the whole input, with hashes spilled to disk.

``expect_column_values_to_be_unique``, ``expect_compound_columns_to_be_unique`` and
``expect_multicolumn_values_to_be_unique`` are judged by
:class:`~airflow_ai_provider.runtime.uniqueness.DuplicateFinder`: a 64-bit hash of each row's value
is spilled to bucket files in the scratch folder, and only when some hashes repeat is the input read
a second time to count the actual duplicated values (so a hash collision cannot fail the check, and
the examples are real values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.uniqueness import DuplicateFinder
from airflow_ai_provider.runtime.validation.aggregates import count_fields, frames, plain
from airflow_ai_provider.runtime.validation.gx_suite import evr


class Uniqueness(DuplicateFinder):
    """Exact uniqueness of a column (or column combination) over all batches, in bounded memory.

    :param config: the expectation's Great Expectations configuration.
    :param scratch: folder for the hash buckets.
    :param max_examples: duplicated values kept in the result.
    """

    def __init__(self, config: Any, scratch: str, max_examples: int) -> None:
        kwargs = config.kwargs
        columns = [kwargs["column"]] if kwargs.get("column") else list(kwargs["column_list"])
        super().__init__(columns, scratch, kwargs.get("ignore_row_if") or "all_values_are_missing")
        self.config = config
        self.max_examples = max_examples

    def result(self) -> Any:
        """The expectation's result after the second pass (:func:`count_duplicates`)."""
        repeated = self.repeated()
        unexpected = sum(count for _, count in repeated)
        mostly = self.config.kwargs.get("mostly") or 1.0
        considered = self.rows - self.missing
        success = unexpected == 0 or (considered > 0 and (considered - unexpected) / considered >= mostly)
        values = count_fields(self.rows, self.missing, unexpected)
        # repeated() lists the most frequent first
        shown = [(plain(list(v) if isinstance(v, tuple) else v), c) for v, c in repeated]
        values.update(
            partial_unexpected_list=[v for v, c in shown for _ in range(c)][: self.max_examples],
            partial_unexpected_counts=[{"value": v, "count": c} for v, c in shown[: self.max_examples]],
        )
        return evr(self.config, success, values)


def count_duplicates(
    data: storage.InputData,
    unique: dict[int, Uniqueness],
    batch_size: int,
    log: Callable[[str], None],
) -> None:
    """Second pass: read the columns with repeated hashes again and count the values behind them."""
    candidates = {position: tracker.repeated_hashes() for position, tracker in unique.items()}
    pending = {position: hashes for position, hashes in candidates.items() if len(hashes)}
    if not pending:
        return
    columns = sorted({name for position in pending for name in unique[position].columns})
    log(f"repeated values found; reading the input again to count duplicates in {', '.join(columns)}")
    for frame in frames(data, batch_size, columns):
        for position, hashes in pending.items():
            unique[position].count_values(frame, hashes)
