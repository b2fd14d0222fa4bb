"""The churn sample: synthetic data, file writing, and training + registration in MLflow."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tests._support import churn_sample
from tests._support.churn_sample import FEATURES, make_customers, train_and_register, write_customers

# Every entry point through which MLflow infers a model's pip requirements (the slow path).
INFERENCE_FUNCTIONS = (
    "mlflow.models.infer_pip_requirements",
    "mlflow.utils.environment.infer_pip_requirements",
    "mlflow.utils.environment._infer_requirements",
    "mlflow.utils.requirements_utils._infer_requirements",
)


# --------------------------------------------------------------------------- data


def test_customers_have_the_documented_columns_and_dtypes() -> None:
    frame = make_customers(500, seed=1)

    assert list(frame.columns) == ["customer_id", *FEATURES, "churned"]
    assert all(frame[name].dtype == "float64" for name in FEATURES)
    assert frame["churned"].dtype == "int64"
    assert set(frame["churned"].unique()) == {0, 1}
    assert frame["customer_id"].is_unique
    assert frame["customer_id"].iloc[0] == "C0000001"
    assert frame["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert not frame.isna().any().any()


def test_same_seed_gives_the_same_rows_and_another_seed_does_not() -> None:
    first, again, other = make_customers(300, 7), make_customers(300, 7), make_customers(300, 8)

    assert first.equals(again)
    assert not first[list(FEATURES)].equals(other[list(FEATURES)])


def test_unlabelled_customers_have_the_same_features() -> None:
    labelled = make_customers(200, 3)
    unlabelled = make_customers(200, 3, with_label=False)

    assert "churned" not in unlabelled.columns
    assert unlabelled.equals(labelled.drop(columns="churned"))


def test_feature_ranges_are_plausible() -> None:
    frame = make_customers(5_000, 0)

    assert frame["tenure_months"].between(1, 72).all()
    assert frame["age"].between(18, 90).all()
    assert set(frame["contract_months"].unique()) == {1.0, 12.0, 24.0}
    assert (frame["num_products"] >= 1).all()
    assert (frame["total_charges"] > 0).all()


def test_label_follows_the_features() -> None:
    frame = make_customers(20_000, 0)
    rate = frame["churned"].mean()

    def churn_rate(mask: Any) -> float:
        return float(frame.loc[mask, "churned"].mean())

    assert 0.2 < rate < 0.5
    assert churn_rate(frame["support_calls"] >= 3) > rate + 0.1
    assert churn_rate(frame["tenure_months"] >= 60) < rate - 0.1
    assert churn_rate(frame["contract_months"] == 24) < churn_rate(frame["contract_months"] == 1)
    assert frame[[*FEATURES, "churned"]].corr()["churned"]["monthly_charges"] > 0.1


def test_zero_rows_and_bad_sizes() -> None:
    assert make_customers(0).shape == (0, len(FEATURES) + 2)
    with pytest.raises(ValueError, match="n_rows"):
        make_customers(-1)


# --------------------------------------------------------------------------- writing


def test_write_parquet_files_split_the_rows_with_several_row_groups(tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    written = write_customers(tmp_path / "out", 2_500, seed=4, n_files=3, row_group_size=400)

    assert [Path(uri).name for uri in written] == [f"customers-0000{i}.parquet" for i in range(3)]
    assert all(pq.ParquetFile(uri).metadata.num_row_groups >= 2 for uri in written)
    combined = pd.concat([pd.read_parquet(uri) for uri in written], ignore_index=True)
    assert combined.equals(make_customers(2_500, 4, with_label=False))


def test_write_uses_50k_row_groups_by_default(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    (written,) = write_customers(tmp_path, 120_000, seed=0)

    metadata = pq.ParquetFile(written).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        50_000,
        50_000,
        20_000,
    ]


def test_write_csv_with_label_to_a_file_uri(tmp_path: Path) -> None:
    import pandas as pd

    written = write_customers(f"file://{tmp_path}/csv", 100, seed=2, fmt="csv", with_label=True)

    assert written == [f"file://{tmp_path.resolve()}/csv/customers-00000.csv"]
    back = pd.read_csv(written[0].removeprefix("file://"))
    assert list(back.columns) == ["customer_id", *FEATURES, "churned"]
    assert back["churned"].tolist() == make_customers(100, 2)["churned"].tolist()
    assert not list((tmp_path / "csv").glob(".*partial"))


def test_write_rejects_unknown_format_and_file_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_customers(tmp_path, 10, fmt="json")
    with pytest.raises(ValueError, match="n_files"):
        write_customers(tmp_path, 10, n_files=0)


def test_write_to_s3_with_storage_options(s3_server: Any, s3_bucket: str) -> None:
    import io

    import pandas as pd

    options = {
        "endpoint_url": s3_server.endpoint_url,
        "key": s3_server.access_key,
        "secret": s3_server.secret_key,
        "region_name": s3_server.region,
    }

    written = write_customers(f"s3://{s3_bucket}/in/", 1_000, seed=5, n_files=2, storage_options=options)

    assert written == [f"s3://{s3_bucket}/in/customers-0000{i}.parquet" for i in range(2)]
    client = s3_server.client()
    parts = [client.get_object(Bucket=s3_bucket, Key=uri.split("/", 3)[3])["Body"].read() for uri in written]
    combined = pd.concat([pd.read_parquet(io.BytesIO(part)) for part in parts], ignore_index=True)
    assert combined.equals(make_customers(1_000, 5, with_label=False))


def test_write_to_s3_with_endpoint_from_environment(
    s3_server: Any, s3_bucket: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)

    written = write_customers(f"s3://{s3_bucket}", 50, fmt="csv")

    assert written == [f"s3://{s3_bucket}/customers-00000.csv"]
    body = s3_server.client().get_object(Bucket=s3_bucket, Key="customers-00000.csv")["Body"].read()
    assert body.decode().splitlines()[0] == ",".join(["customer_id", *FEATURES])


def test_command_line_writes_and_prints_locations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = churn_sample.main(["write", str(tmp_path), "--rows", "20", "--files", "2", "--fmt", "csv"])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == [str(tmp_path / f"customers-0000{i}.csv") for i in range(2)]


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Train and register once, with spies on MLflow's requirement inference."""
    import mlflow

    store = tmp_path_factory.mktemp("churn-registry")
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    env_before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    uri_before = mlflow.get_tracking_uri()
    spies = {
        target: mock.patch(target, autospec=True, side_effect=AssertionError(target))
        for target in INFERENCE_FUNCTIONS
    }
    started = {target: patcher.start() for target, patcher in spies.items()}
    try:
        result = train_and_register(tracking_uri, "churn", alias="champion", n_rows=5_000, seed=0)
    finally:
        for patcher in spies.values():
            patcher.stop()
    yield {
        "result": result,
        "tracking_uri": tracking_uri,
        "store": store,
        "inference_calls": {target: spy.call_count for target, spy in started.items()},
        "env_before": env_before,
        "env_after": {name: os.environ.get(name) for name in env_before},
        "uri_before": uri_before,
        "uri_after": mlflow.get_tracking_uri(),
    }


def test_train_and_register_returns_the_new_version(trained: dict[str, Any]) -> None:
    result = trained["result"]

    assert set(result) == {"name", "version", "run_id", "metrics", "model_uri"}
    assert (result["name"], result["version"], result["model_uri"]) == ("churn", 1, "models:/churn/1")
    assert result["metrics"]["accuracy"] > 0.72
    assert result["metrics"]["roc_auc"] > 0.8


def test_train_and_register_sets_alias_and_logs_the_run(trained: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=trained["tracking_uri"], registry_uri=trained["tracking_uri"])
    version = client.get_model_version_by_alias("churn", "champion")
    run = client.get_run(trained["result"]["run_id"])

    assert int(version.version) == 1
    assert version.run_id == trained["result"]["run_id"]
    assert client.get_experiment(run.info.experiment_id).name == "churn-training"
    assert run.data.metrics["accuracy"] == pytest.approx(trained["result"]["metrics"]["accuracy"])
    assert run.info.artifact_uri.startswith((trained["store"] / "mlartifacts").as_uri())
    assert list((trained["store"] / "mlartifacts").rglob("model.pkl"))


def test_registered_model_loads_and_predicts(trained: dict[str, Any]) -> None:
    import mlflow

    customers = make_customers(50, seed=9, with_label=False)[list(FEATURES)]
    with churn_sample.mlflow_uris(trained["tracking_uri"]):
        model = mlflow.pyfunc.load_model(trained["result"]["model_uri"])

    predictions = model.predict(customers)
    probabilities = model.get_raw_model().predict_proba(customers)

    assert set(predictions.tolist()) <= {0, 1}
    assert probabilities.shape == (50, 2)
    assert model.metadata.get_input_schema().input_names() == list(FEATURES)
    assert model.metadata.flavors["sklearn"]["serialization_format"] == "cloudpickle"


def test_logged_model_pins_its_requirements(trained: dict[str, Any]) -> None:
    import mlflow
    import sklearn

    with churn_sample.mlflow_uris(trained["tracking_uri"]):
        requirements = Path(
            mlflow.artifacts.download_artifacts(f"{trained['result']['model_uri']}/requirements.txt")
        ).read_text()

    assert f"scikit-learn=={sklearn.__version__}" in requirements.splitlines()
    assert f"mlflow=={mlflow.__version__}" in requirements.splitlines()


def test_no_pip_requirement_inference_happens(trained: dict[str, Any]) -> None:
    assert trained["inference_calls"] == dict.fromkeys(INFERENCE_FUNCTIONS, 0)


def test_global_tracking_uri_is_left_as_it_was(trained: dict[str, Any]) -> None:
    assert trained["uri_after"] == trained["uri_before"]
    assert trained["env_after"] == trained["env_before"]


def test_the_spy_sits_on_the_path_mlflow_takes_without_pip_requirements(tmp_path: Path) -> None:
    """Control: saving without ``pip_requirements`` goes through the patched function."""
    import mlflow
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    with mock.patch("mlflow.models.infer_pip_requirements", return_value=[]) as spy:
        mlflow.sklearn.save_model(model, str(tmp_path / "model"), serialization_format="cloudpickle")

    assert spy.call_count == 1


def test_mlflow_uris_restores_uris_set_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    outer, inner = f"sqlite:///{tmp_path / 'outer.db'}", f"sqlite:///{tmp_path / 'inner.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)

    with churn_sample.mlflow_uris(inner):
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (inner, inner)

    assert os.environ["MLFLOW_TRACKING_URI"] == outer
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (outer, outer)
