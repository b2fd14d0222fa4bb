"""The operators check job parameters with the runtime's own parameter classes when the DAG is parsed.

A literal bad argument raises :class:`AiProviderConfigError` naming the task and the argument with the
runtime's message; a templated one (``{{ ... }}`` or an upstream task's output) waits for rendering,
where :meth:`check_rendered_arguments` applies the same check.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.operators.quality_gate import QualityGateOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.runtime.contract.errors import JobInputError

BASE = {
    BatchInferenceOperator: {"model": "churn@champion", "input_uri": "/in", "output_uri": "/out"},
    RetrainModelOperator: {
        "training_function": "pkg.mod:train", "input_uri": "/in", "label_column": "churned", "model_name": "churn",
    },
    DataValidationOperator: {"input_uri": "/in", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]},
    QualityGateOperator: {"challenger": "churn@challenger", "holdout_uri": "/in", "label_column": "churned"},
    DriftDetectionOperator: {"model": "churn@champion", "input_uri": "/in"},
}  # fmt: skip

LITERAL_CASES = [
    (BatchInferenceOperator, {"batch_size": "x"}, "batch_size must be a positive integer, got 'x'"),
    (BatchInferenceOperator, {"batch_size": 10**30}, "batch_size must be at most 2147483647"),
    (BatchInferenceOperator, {"shard_count": "abc"}, "shard_count must be a positive integer, got 'abc'"),
    (BatchInferenceOperator, {"shard_index": 4, "shard_count": 4}, "shard_index 4 is out of range for shard_count 4"),
    (BatchInferenceOperator, {"id_columns": "a, b"}, "id_columns is the single string 'a, b': pass a list"),
    (BatchInferenceOperator, {"check_unique_ids": True}, "check_unique_ids needs id_columns"),
    (BatchInferenceOperator, {"extra_columns": "keep"}, "extra_columns must be one of error, ignore"),
    (RetrainModelOperator, {"training_function": "train"}, "training_function must be 'package.module:function'"),
    (RetrainModelOperator, {"alias": "latest"}, "alias 'latest' is not valid"),
    (RetrainModelOperator, {"feature_columns": ["churned"]}, "label column 'churned' is also listed in feature_columns"),
    (DataValidationOperator, {"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    (DataValidationOperator, {"memory_budget_mb": 0}, "memory_budget_mb must be a positive integer, got 0"),
    (DataValidationOperator, {"input_format": "json"}, "input_format must be one of parquet, csv, got 'json'"),
    (QualityGateOperator, {"min_metrics": {"accuracy": "high"}}, "min_metrics['accuracy'] must be a number"),
    (QualityGateOperator, {"max_metrics": {"acc": 1}}, "max_metrics names metric(s) 'acc'"),
    (QualityGateOperator, {"task_type": "ranking"}, "task_type must be one of classification, regression"),
    (DriftDetectionOperator, {"psi_threshold": -1}, "psi_threshold must be > 0, got -1"),
    (DriftDetectionOperator, {"ks_pvalue_threshold": 2}, "ks_pvalue_threshold must be < 1, got 2"),
    (DriftDetectionOperator, {"features": ["a"], "min_drifted_features": 2}, "min_drifted_features 2 is more than"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("operator", "kwargs", "message"),
    LITERAL_CASES,
    ids=[f"{c[0].__name__}-{next(iter(c[1]))}" for c in LITERAL_CASES],
)
def test_literal_bad_argument_fails_when_the_dag_is_parsed(operator, kwargs, message):
    with pytest.raises(AiProviderConfigError) as caught:
        operator(task_id="job", **{**BASE[operator], **kwargs})
    assert str(caught.value).startswith(f"job: {message}")
    assert "\n" not in str(caught.value)


def test_drift_asset_that_is_not_an_asset_fails_when_the_dag_is_parsed():
    with pytest.raises(AiProviderConfigError, match="job: drift_asset must be an airflow.sdk.Asset, got str"):
        DriftDetectionOperator(task_id="job", drift_asset="churn", **BASE[DriftDetectionOperator])


def test_templated_arguments_wait_for_rendering_and_are_checked_then():
    operator = BatchInferenceOperator(
        task_id="job", batch_size="{{ params.batch }}", shard_count="{{ params.n }}", shard_index=3,
        id_columns="{{ params.ids }}", **BASE[BatchInferenceOperator],
    )  # fmt: skip
    operator.batch_size, operator.shard_count, operator.id_columns = "64", "abc", "customer_id"
    with pytest.raises(JobInputError, match=r"^shard_count must be a positive integer, got 'abc'$"):
        operator.check_rendered_arguments({})
    operator.shard_count = "4"
    operator.check_rendered_arguments({})
    assert operator.job_params() == {"id_columns": ["customer_id"], "batch_size": 64, "extra_columns": "error",
                                     "check_unique_ids": False}  # fmt: skip


def test_validation_batches_are_left_to_the_job_unless_given():
    sized = DataValidationOperator(task_id="job", **BASE[DataValidationOperator])
    budget = DataValidationOperator(task_id="job", memory_budget_mb=256, **BASE[DataValidationOperator])
    assert "batch_size" not in sized.job_params() and "memory_budget_mb" not in sized.job_params()
    assert budget.job_params()["memory_budget_mb"] == 256


def test_upstream_output_as_an_argument_waits_for_rendering():
    with DAG("xcom_args", schedule=None):

        @task
        def thresholds() -> dict[str, Any]:
            return {"accuracy": 0.8}

        gate = QualityGateOperator(task_id="gate", min_metrics=thresholds(), **BASE[QualityGateOperator])
    gate.min_metrics = {"accuracy": "0.75"}  # what the upstream task returned
    assert gate.job_params()["min_metrics"] == {"accuracy": 0.75}


def test_ks_threshold_none_means_psi_alone_and_reaches_the_spec_as_none():
    operator = DriftDetectionOperator(task_id="job", ks_pvalue_threshold=None, **BASE[DriftDetectionOperator])
    assert operator.job_params()["ks_pvalue_threshold"] is None
    operator.ks_pvalue_threshold = "None"  # a template that rendered None as text
    assert operator.job_params()["ks_pvalue_threshold"] is None


def test_training_id_and_feature_columns_rendered_to_one_name_are_one_column():
    operator = RetrainModelOperator(
        task_id="train",
        id_columns="{{ params.id }}",
        feature_columns="tenure_months",
        **BASE[RetrainModelOperator],
    )
    operator.id_columns = "customer_id"  # as rendered
    params = operator.job_params()
    assert (params["id_columns"], params["feature_columns"]) == (["customer_id"], ["tenure_months"])


def test_partial_of_a_mapped_task_checks_literal_arguments_when_the_dag_is_parsed():
    with DAG("mapped", schedule=None):
        with pytest.raises(
            AiProviderConfigError, match=r"^score: batch_size must be a positive integer, got 'x'$"
        ):
            BatchInferenceOperator.partial(task_id="score", batch_size="x", **BASE[BatchInferenceOperator])
        with pytest.raises(
            AiProviderConfigError, match=r"^score: shard_count must be a positive integer, got 0$"
        ):
            BatchInferenceOperator.partial(task_id="score", shard_count=0, **BASE[BatchInferenceOperator])
        with pytest.raises(AiProviderConfigError, match=r"^gate: task_type must be one of classification"):
            QualityGateOperator.partial(task_id="gate", task_type="ranking", **BASE[QualityGateOperator])
        mapped = BatchInferenceOperator.partial(
            task_id="ok", shard_count=4, batch_size="{{ params.batch }}", **BASE[BatchInferenceOperator]
        ).expand(shard_index=[0, 1, 2, 3])
    assert mapped.partial_kwargs["shard_count"] == 4
