"""BatchInferenceOperator's model_threads reaches the runtime's parameters, and a bad value fails at parse."""

from __future__ import annotations

import pytest

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.inference import BatchInferenceOperator

BASE = {"model": "churn@champion", "input_uri": "/in", "output_uri": "/out"}


def test_model_threads_is_passed_to_the_job_and_left_out_when_not_set():
    capped = BatchInferenceOperator(task_id="capped", model_threads=1, **BASE)
    default = BatchInferenceOperator(task_id="default", **BASE)

    assert capped.job_params()["model_threads"] == 1
    assert "model_threads" not in default.job_params()
    assert "batch_size" not in default.job_params()  # sized by the runtime from the input's metadata


def test_a_templated_model_threads_is_checked_once_rendered():
    operator = BatchInferenceOperator(task_id="t", model_threads="{{ params.threads }}", **BASE)
    operator.model_threads = "2"

    assert operator.job_params()["model_threads"] == 2


def test_model_threads_of_zero_fails_when_the_dag_is_parsed():
    with pytest.raises(AiProviderConfigError, match="model_threads must be a positive integer, got 0"):
        BatchInferenceOperator(task_id="t", model_threads=0, **BASE)
