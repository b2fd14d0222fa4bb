"""A model loaded from the cache (no MLflow import) behaves as the one MLflow loads: same flavors,
signature, estimator, pyfunc predictions and errors, for every kind of model in the test registry."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime.contract import MODEL_CACHE_ENV
from airflow_ai_provider.runtime.contract.errors import ModelLoadError
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.models import loading
from tests.unit.runtime.conftest import FEATURES, HGB_TRUSTED, customers


def _schema(model: loading.LoadedModel) -> tuple | None:
    schema = model.input_schema()
    if schema is None:
        return None
    columns = [(spec.name, spec.required, getattr(spec.type, "name", None)) for spec in schema.inputs]
    return bool(schema.is_tensor_spec()), bool(schema.has_input_names()), columns


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("churn", []),
        ("churn-pickle", []),
        ("spend", []),
        ("nosig", []),
        ("hgb", []),
        ("hgb-untrusted", HGB_TRUSTED),
    ],
)
def test_a_hit_loads_the_same_model_as_mlflow_does(registry, tmp_path, monkeypatch, name, trusted):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    ref, mlflow_ref = ModelReference(name, "1"), MlflowRef(tracking_uri=registry.tracking_uri)

    miss = loading.load_model(ref, mlflow_ref, str(tmp_path / "a"), trusted)
    hit = loading.load_model(ref, mlflow_ref, str(tmp_path / "b"), trusted)

    assert (miss.info["model_cache"], hit.info["model_cache"]) == ("miss", "hit")
    assert {k: v for k, v in hit.info.items() if not k.endswith("_s") and k != "model_cache"} == {
        k: v for k, v in miss.info.items() if not k.endswith("_s") and k != "model_cache"
    }
    assert hit.flavors == miss.flavors
    assert _schema(hit) == _schema(miss)
    frame = customers(40, seed=7)[FEATURES]
    features = frame if name != "nosig" else frame.to_numpy()
    raw = hit.pyfunc.get_raw_model()
    assert type(raw) is type(miss.pyfunc.get_raw_model())
    assert raw.predict(features).tolist() == miss.pyfunc.get_raw_model().predict(features).tolist()
    assert list(hit.pyfunc.predict(frame)) == list(miss.pyfunc.predict(frame))


def test_a_hit_of_an_untrusted_skops_model_fails_as_a_download_does(registry, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    ref, mlflow_ref = ModelReference("hgb-untrusted", "1"), MlflowRef(tracking_uri=registry.tracking_uri)
    loading.load_model(ref, mlflow_ref, str(tmp_path / "fill"), HGB_TRUSTED)  # fills the cache

    with pytest.raises(ModelLoadError) as from_cache:
        loading.load_model(ref, mlflow_ref, str(tmp_path / "a"), [])
    monkeypatch.delenv(MODEL_CACHE_ENV)
    with pytest.raises(ModelLoadError) as downloaded:
        loading.load_model(ref, mlflow_ref, str(tmp_path / "b"), [])

    assert str(from_cache.value) == str(downloaded.value)
    assert "skops_trusted_types" in str(from_cache.value)
