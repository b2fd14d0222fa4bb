"""BatchInferenceOperator takes the vector and incremental job parameters as arguments of the same name."""

from __future__ import annotations

import pytest

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.runtime.contract.errors import JobInputError

BASE = {"model": "docs@champion", "input_uri": "/in", "output_uri": "/out", "id_columns": ["doc_id"]}


def test_vector_and_incremental_arguments_reach_the_job_parameters():
    operator = BatchInferenceOperator(
        task_id="embed", output_columns={"embedding": "vector"}, vector_type="float64", batch_memory_mb=64,
        content_columns=["title", "body"], previous_output="s3://bucket/embeddings/v1/",
        vector_index="vector", index_check_queries=5, **BASE,
    )  # fmt: skip
    params = operator.job_params()
    assert params["output_columns"] == {"embedding": "vector"}
    assert params["vector_type"] == "float64"
    assert params["batch_memory_mb"] == 64
    assert params["content_columns"] == ["title", "body"]
    assert params["previous_output"] == "s3://bucket/embeddings/v1/"
    assert params["vector_index"] == "vector"
    assert params["index_check_queries"] == 5


def test_previous_output_and_content_columns_are_template_fields():
    for name in ("previous_output", "content_columns", "output_columns", "vector_index", "batch_memory_mb"):
        assert name in BatchInferenceOperator.template_fields


def test_previous_output_without_content_columns_fails_when_the_dag_is_parsed():
    with pytest.raises(AiProviderConfigError, match=r"^embed: previous_output needs content_columns"):
        BatchInferenceOperator(task_id="embed", previous_output="/prev", **BASE)


def test_templated_previous_output_is_checked_once_rendered():
    operator = BatchInferenceOperator(
        task_id="embed", previous_output="{{ params.prev }}", content_columns="{{ params.cols }}", **BASE
    )
    operator.previous_output, operator.content_columns = "/prev", []
    with pytest.raises(JobInputError, match=r"^previous_output needs content_columns"):
        operator.check_rendered_arguments({})
    operator.content_columns = "body"
    assert operator.job_params()["content_columns"] == ["body"]


def test_bad_vector_type_fails_when_the_dag_is_parsed():
    with pytest.raises(AiProviderConfigError, match=r"^embed: vector_type must be one of float32, float64"):
        BatchInferenceOperator(task_id="embed", vector_type="float16", **BASE)


@pytest.mark.parametrize("rendered", ["", "None", "  "])
def test_a_previous_output_that_renders_to_nothing_means_no_earlier_output(rendered):
    operator = BatchInferenceOperator(
        task_id="embed", previous_output="{{ ti.xcom_pull(task_ids='find_previous') }}",
        content_columns=["body"], **BASE,
    )  # fmt: skip
    operator.previous_output = rendered
    operator.check_rendered_arguments({})
    assert "previous_output" not in operator.job_params()
