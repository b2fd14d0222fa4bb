"""The model cache's settings from the environment and its key (the cache itself is tested with a real
MLflow server in tests/integration/runtime/test_model_cache.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.models.cache import CacheKey, CacheSettings


@pytest.mark.parametrize(
    ("value", "root", "max_mb"),
    [("/c", "/c", 2048), ("/c:100", "/c", 100), ("/a:b/c", "/a:b/c", 2048), (" /c:7 ", "/c", 7)],
)
def test_settings_come_from_the_environment(value, root, max_mb):
    settings = CacheSettings.from_env({"AI_PROVIDER_MODEL_CACHE": value})
    assert settings == CacheSettings(Path(root), max_mb * 1024 * 1024)
    assert CacheSettings.from_env({"AI_PROVIDER_MODEL_CACHE": settings.to_env()}) == settings


def test_no_variable_means_no_cache():
    assert CacheSettings.from_env({}) is None
    assert CacheSettings.from_env({"AI_PROVIDER_MODEL_CACHE": " "}) is None


@pytest.mark.parametrize("value", ["relative/cache", "/c:0"])
def test_a_bad_variable_is_one_line_bad_input(value):
    with pytest.raises(JobInputError, match="invalid AI_PROVIDER_MODEL_CACHE"):
        CacheSettings.from_env({"AI_PROVIDER_MODEL_CACHE": value})


def test_the_key_ignores_credentials_but_not_the_versions_source_or_run():
    key = CacheKey("http://u:p@mlflow:5000", "churn", "3", "mlflow-artifacts:/1/abc/artifacts/model", "abc")
    same = CacheKey("http://mlflow:5000", "churn", "3", "mlflow-artifacts:/1/abc/artifacts/model", "abc")
    recreated = CacheKey("http://mlflow:5000", "churn", "3", "mlflow-artifacts:/1/def/artifacts/model", "def")
    assert key.digest == same.digest != recreated.digest
