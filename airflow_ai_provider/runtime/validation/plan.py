"""The plan of a multi-batch validation: how each expectation of the suite is judged.

- *row expectations* (column map, column pair map and multicolumn map expectations) are validated
  per batch and their counts summed (:class:`~.aggregates.MapTotals`);
- *uniqueness across rows* (:data:`UNIQUE`) is exact over the whole input (:mod:`.uniqueness`);
- *streamed aggregates* (:data:`STREAMED`) are computed with running totals
  (:class:`~.aggregates.ColumnStats`);
- *schema expectations* are judged on the first batch;
- *every other expectation* needs all rows at once, which the job refuses on a multi-batch input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_ai_provider.runtime.contract.suite import SCHEMA_EXPECTATIONS, SuiteDef
from airflow_ai_provider.runtime.validation.gx_suite import expectation_class, gx_configuration

UNIQUE = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_multicolumn_values_to_be_unique",
    }
)
#: Aggregate expectations computed with running totals: type -> Great Expectations metric name.
STREAMED = {
    "expect_table_row_count_to_be_between": "table.row_count",
    "expect_table_row_count_to_equal": "table.row_count",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_max_to_be_between": "column.max",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_stdev_to_be_between": "column.standard_deviation",
    "expect_column_proportion_of_non_null_values_to_be_between": "column.non_null_proportion",
}
#: Streamed metrics that only numbers have.
NUMERIC_METRICS = frozenset({"column.sum", "column.mean", "column.standard_deviation"})
#: Table expectations that read no column's values.
TABLE_ONLY = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})
#: Map expectations that still compare a row with other rows (order, column statistics).
NOT_ROW_LOCAL = frozenset(
    {
        "expect_column_values_to_be_increasing",
        "expect_column_values_to_be_decreasing",
        "expect_column_value_z_scores_to_be_less_than",
        "expect_column_values_to_not_be_outliers",
    }
)


@dataclass
class Plan:
    """Positions of the suite's expectations by how they are judged on a multi-batch input."""

    row: list[int] = field(default_factory=list)
    unique: list[int] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)
    schema: list[int] = field(default_factory=list)
    whole: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, suite: SuiteDef) -> Plan:
        """Classify every expectation; unknown types and invalid arguments raise :class:`JobInputError`."""
        from great_expectations.expectations.expectation import (
            ColumnMapExpectation,
            ColumnPairMapExpectation,
            MulticolumnMapExpectation,
        )

        plan = cls()
        for position, expectation in enumerate(suite.expectations):
            gx_configuration(expectation, position)  # checks the type and the arguments
            kind = expectation_class(expectation.type)
            if expectation.type in UNIQUE:
                plan.unique.append(position)
            elif expectation.type in STREAMED:
                plan.streamed.append(position)
            elif expectation.type in SCHEMA_EXPECTATIONS:
                plan.schema.append(position)
            elif expectation.type not in NOT_ROW_LOCAL and issubclass(
                kind, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
            ):
                plan.row.append(position)
            else:
                plan.whole.append(position)
        return plan


def needed_columns(suite: SuiteDef, names: list[str]) -> list[str]:
    """The columns of ``names`` whose values the suite reads, in input order.

    Schema and row count expectations read none; an expectation whose columns cannot be told (no
    column argument, or a ``row_condition`` naming other columns) makes every column needed.
    """
    wanted: set[str] = set()
    for expectation in suite.expectations:
        if expectation.kwargs.get("row_condition"):
            return list(names)
        if expectation.type in SCHEMA_EXPECTATIONS or expectation.type in TABLE_ONLY:
            continue
        if not expectation.columns:
            return list(names)
        wanted.update(expectation.columns)
    return [name for name in names if name in wanted] or list(names[:1])
