"""The provider's asset URI scheme is registered with Airflow and normalised by it."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset

from airflow_ai_provider.assets import drift_asset, model_asset


def test_model_and_drift_assets_have_distinct_normalised_uris():
    assert model_asset("churn").uri == "mlflow-model://churn"
    assert drift_asset("churn").uri == "mlflow-model://churn/drift"
    assert Asset(uri="mlflow-model://churn/", name="same").uri == "mlflow-model://churn"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlflow-model://churn/3", "names a version"),
        ("mlflow-model:///", "needs a registered model name"),
        ("mlflow-model://churn/metrics", "path must be empty or /drift"),
        ("mlflow-model://churn?v=2", "must not have a query"),
    ],
)
def test_airflow_rejects_malformed_model_asset_uris(uri, message):
    with pytest.raises(ValueError, match=message):
        Asset(uri=uri, name="bad")


def test_scheme_is_registered_through_provider_info():
    from airflow.providers_manager import ProvidersManager

    assert "mlflow-model" in ProvidersManager().asset_uri_handlers
