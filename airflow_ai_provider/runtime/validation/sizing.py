"""Rows per batch of the ``validate`` job, from the input's metadata and a memory budget.

An explicit ``batch_size`` is used as given. Otherwise a batch holds as many rows as fit in
``memory_budget_mb`` (default :data:`DEFAULT_BUDGET_MB`, or a quarter of the memory available to the
process if less: :func:`~airflow_ai_provider.runtime.storage.sizing.memory_budget`): one row's
estimated working set is its width (:func:`~airflow_ai_provider.runtime.storage.sizing.row_width`,
shared with the ``infer`` job) times :data:`WORKING_SET_FACTOR` (the Arrow batch, its pandas frame
and Great Expectations' masks and temporaries). An input that fits is one batch, so Great
Expectations' per-batch cost is paid once and every expectation type works; a larger one is cut into
equal batches no larger than the budget allows, so memory follows the budget, not the input.

CSV files carry no row counts: an input whose files' total size, times the factor, fits the budget
is one batch whatever the estimate; a larger one gets as many rows a batch as the estimate allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_ai_provider.runtime import storage
from airflow_ai_provider.runtime.storage import sizing

#: Peak memory of validating a batch as a multiple of its Arrow size: the Arrow batch while it
#: converts, the pandas frame, and Great Expectations' per-expectation masks, filters and copies.
#: Measured with the churn suite (17 expectations, numbers and text, 82 Arrow bytes a row): 3.6 in
#: one batch, 4.5 over several (the uniqueness hashes of text values); rounded up.
WORKING_SET_FACTOR = 5.0
#: The default memory budget of one batch, in MiB (the validate pod's default request is 2 GiB).
DEFAULT_BUDGET_MB = 1024
#: The most rows one batch may hold when the input's row count is unknown (CSV read in one batch).
WHOLE_INPUT = 2**62


@dataclass(frozen=True)
class BatchPlan:
    """How many rows one batch holds and why.

    :param rows: rows per batch.
    :param row_bytes: estimated Arrow bytes per row (``None`` for an explicit ``batch_size``).
    :param budget_mb: the memory budget the rows were sized from (``None`` when explicit).
    """

    rows: int
    row_bytes: float | None = None
    budget_mb: int | None = None

    def describe(self) -> str:
        """A few words for the job log."""
        if self.budget_mb is None:
            return f"batches of {self.rows} rows (batch_size)"
        size = "the whole input" if self.rows >= WHOLE_INPUT else f"{self.rows} rows"
        return (
            f"batches of {size} (about {self.row_bytes:.0f} bytes a row in Arrow, "
            f"within a memory budget of {self.budget_mb} MiB)"
        )


def plan_batches(
    data: storage.InputData, columns: list[str], batch_size: int | None, budget_mb: int | None
) -> BatchPlan:
    """Rows per batch: ``batch_size`` when given, else sized from the metadata and ``budget_mb``."""
    if batch_size is not None:
        return BatchPlan(batch_size)
    if budget_mb is None:
        budget_mb = max(1, sizing.memory_budget(DEFAULT_BUDGET_MB << 20) >> 20)
    budget = budget_mb * (1 << 20)
    width = max(1.0, sizing.row_width(data.metas, data.schema, columns))
    rows = sizing.rows_that_fit(width, budget, WORKING_SET_FACTOR)
    if data.metas[0].file.format == "parquet":
        rows = sizing.equal_batches(sum(sum(meta.row_group_rows) for meta in data.metas), rows)
    elif sum(meta.file.size for meta in data.metas) * WORKING_SET_FACTOR <= budget:
        rows = WHOLE_INPUT
    return BatchPlan(rows, width, budget_mb)
