"""The training data's checks and description: the missing-label error and label statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.training import job
from airflow_ai_provider.runtime.training.data import label_summary
from tests._support.churn_sample import FEATURES, write_customers
from tests.unit.runtime.training.conftest import Store


def test_missing_label_error_lists_the_available_columns(store: Store, tmp_path: Path) -> None:
    write_customers(tmp_path / "unlabelled", 100, seed=1)

    with pytest.raises(JobInputError, match="label column 'target'") as caught:
        job.run(
            store.spec(str(tmp_path / "unlabelled"), store.new_run(), model_name="x", label_column="target")
        )

    assert f"(columns: customer_id, {', '.join(FEATURES)})" in str(caught.value)


def test_label_summary_counts_classes_of_integer_and_string_labels() -> None:
    import pandas as pd

    assert label_summary(pd.Series([0, 1, 1, 1])) == {"classes": {"1": 3, "0": 1}}
    assert label_summary(pd.Series(["stay", "churn", "stay"])) == {"classes": {"stay": 2, "churn": 1}}
