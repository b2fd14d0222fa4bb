"""The OpenLineage pieces that need no task run: dataset naming, the ``mlflow-model`` Asset converter
as the OpenLineage provider finds it, and lineage that cannot be built never failing a task."""

from __future__ import annotations

import logging

import pytest

from airflow_ai_provider.mlflow_runs import TaskRun
from airflow_ai_provider.openlineage import (
    MODEL_NAMESPACE,
    OpenLineageMixin,
    convert_model_asset,
    dataset_name,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/data/customers/", ("s3://bucket", "data/customers/")),
        ("s3://bucket/part-0.parquet", ("s3://bucket", "part-0.parquet")),
        ("file:///data/in.parquet", ("file", "/data/in.parquet")),
        ("/data/in.parquet", ("file", "/data/in.parquet")),
    ],
)
def test_storage_locations_get_openlineage_namespace_and_name(uri, expected):
    assert dataset_name(uri) == expected


def test_model_and_drift_assets_convert_to_mlflow_model_datasets():
    from airflow.sdk import Asset

    model = convert_model_asset(Asset(uri="mlflow-model://churn"), None)
    drift = convert_model_asset(Asset(uri="mlflow-model://churn/drift"), None)

    assert (model.namespace, model.name) == (MODEL_NAMESPACE, "churn")
    assert (drift.namespace, drift.name) == (MODEL_NAMESPACE, "churn/drift")


def test_the_openlineage_provider_translates_model_assets_with_the_registered_converter():
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    dataset = translate_airflow_asset(Asset(uri="mlflow-model://churn"), None)

    assert dataset is not None
    assert (dataset.namespace, dataset.name) == ("mlflow-model", "churn")


class _Broken(OpenLineageMixin):
    log = logging.getLogger("test")

    def lineage_from_record(self, run, result, dag_id):
        raise RuntimeError("boom")


def test_lineage_that_cannot_be_built_is_logged_and_left_empty(caplog):
    operator = _Broken()
    operator.remember_lineage(TaskRun("1", "parent", "run", None), {"job": "infer"})

    with caplog.at_level(logging.WARNING):
        complete = operator.get_openlineage_facets_on_complete(None)
        failed = operator.get_openlineage_facets_on_failure(None)

    assert complete.inputs == complete.outputs == failed.inputs == [] and not complete.run_facets
    assert "Could not build this task's OpenLineage" in caplog.text


def test_a_task_that_recorded_nothing_has_empty_lineage():
    lineage = _Broken().get_openlineage_facets_on_complete(None)

    assert lineage.inputs == [] and lineage.outputs == []
