"""The drift job run in-process: reference profiles from the registry, PSI and KS per feature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import drift
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, PROFILE_TAG, build_profile, profile_uri
from tests._support.churn_sample import FEATURES, make_customers, train_and_register

SHIFTED = {"monthly_charges", "tenure_months"}


@dataclass
class Store:
    tracking_uri: str
    root: Path

    def spec(self, inputs: str, version: str = "1", run_id: str | None = None, **params: Any) -> JobSpec:
        return JobSpec.from_dict(
            {
                "job": "drift",
                "inputs": [inputs],
                "mlflow": {"tracking_uri": self.tracking_uri, "run_id": run_id},
                "model": {"name": "churn", "version": version},
                "params": params,
            }
        )

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """``churn`` v1 with a reference profile in its training run; v2 without one; v3 whose
    ``ai.reference_profile`` tag points at a profile in another run."""
    root = tmp_path_factory.mktemp("drift")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    first = train_and_register(uri, "churn", alias="champion", n_rows=4000, seed=0, max_iter=5)
    train_and_register(uri, "churn", alias=None, n_rows=1000, seed=1, max_iter=2)
    train_and_register(uri, "churn", alias=None, n_rows=1000, seed=2, max_iter=2)
    store = Store(uri, root)
    client = store.client()
    client.log_dict(
        first["run_id"], build_profile(make_customers(4000, seed=0), list(FEATURES)), PROFILE_ARTIFACT
    )
    # v3's profile: data where every customer is 30 years older, so any data drifts on age against it
    older = make_customers(4000, seed=3)
    older["age"] += 30
    elsewhere = client.create_run(client.get_experiment_by_name("churn-training").experiment_id).info.run_id
    client.log_dict(elsewhere, build_profile(older, list(FEATURES)), PROFILE_ARTIFACT)
    client.set_model_version_tag("churn", "3", PROFILE_TAG, profile_uri(elsewhere))
    # v4's profile has a categorical feature: a region, north or south
    train_and_register(uri, "churn", alias=None, n_rows=1000, seed=4, max_iter=2)
    regions = make_customers(2000, seed=4)
    regions["region"] = ["north", "south"] * 1000
    categorical = client.create_run(client.get_experiment_by_name("churn-training").experiment_id).info.run_id
    client.log_dict(categorical, build_profile(regions, ["region", "age"]), PROFILE_ARTIFACT)
    client.set_model_version_tag("churn", "4", PROFILE_TAG, profile_uri(categorical))
    return store


def write(path: Path, frame: Any, n_files: int = 1, fmt: str = "parquet") -> str:
    path.mkdir(parents=True, exist_ok=True)
    size = -(-len(frame) // n_files)
    for index in range(n_files):
        part = frame.iloc[index * size : (index + 1) * size]
        if fmt == "csv":
            part.to_csv(path / f"part-{index}.csv", index=False)
        else:
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path / f"part-{index}.parquet")
    return str(path)


def shifted_customers(rows: int, seed: int) -> Any:
    frame = make_customers(rows, seed=seed, with_label=False)
    frame["monthly_charges"] *= 1.6
    frame["tenure_months"] += 18
    return frame


def test_data_from_the_training_distribution_does_not_drift(store, tmp_path):
    inputs = write(tmp_path / "current", make_customers(20_000, seed=5, with_label=False), n_files=3)

    result = drift.run(store.spec(inputs), log=lambda _: None)

    details = result.details
    assert details["drift"] is False and details["drifted_features"] == []
    assert list(details["features"]) == list(FEATURES)
    assert all(entry["psi"] < 0.05 and not entry["drifted"] for entry in details["features"].values())
    assert result.rows_in == details["rows"] == 20_000
    assert details["model"]["version"] == "1" and details["model"]["profile_rows"] == 4000
    assert result.metrics["drifted_features"] == 0 and result.metrics["max_psi"] < 0.05


def test_shifted_features_drift_and_are_named_in_the_report(store, tmp_path):
    inputs = write(tmp_path / "shifted", shifted_customers(10_000, seed=6), n_files=2, fmt="csv")
    client = store.client()
    run_id = client.create_run(client.get_experiment_by_name("churn-training").experiment_id).info.run_id

    result = drift.run(store.spec(inputs, run_id=run_id), log=lambda _: None)

    details = result.details
    assert details["drift"] is True
    assert set(details["drifted_features"]) == SHIFTED
    for name, entry in details["features"].items():
        assert set(entry) >= {"psi", "ks_statistic", "ks_pvalue", "drifted"}
        if name in SHIFTED:
            assert entry["psi"] > 0.2 and entry["ks_pvalue"] < 1e-6 and entry["drifted"]
        else:
            assert entry["psi"] < 0.05 and not entry["drifted"]
    assert result.metrics["max_psi"] == pytest.approx(
        max(e["psi"] for e in details["features"].values()), abs=1e-6
    )
    assert result.metrics["psi_monthly_charges"] > 0.2
    artifacts = {a.path for a in store.client().list_artifacts(run_id)}
    assert artifacts == {"drift_report.json", "drift_psi.png"}


def test_data_drifts_only_when_enough_features_drift(store, tmp_path):
    inputs = write(tmp_path / "shifted", shifted_customers(5_000, seed=7))

    result = drift.run(store.spec(inputs, min_drifted_features=3), log=lambda _: None)

    assert result.details["drift"] is False
    assert set(result.details["drifted_features"]) == SHIFTED


def test_batch_size_does_not_change_the_report(store, tmp_path):
    inputs = write(tmp_path / "shifted", shifted_customers(6_000, seed=8), n_files=2)

    small = drift.run(store.spec(inputs, batch_size=700, sample_size=1000), log=lambda _: None)
    large = drift.run(store.spec(inputs, batch_size=65_536, sample_size=1000), log=lambda _: None)

    # bin counts and the KS sample do not depend on how the rows are cut into batches
    for name, entry in large.details["features"].items():
        other = dict(small.details["features"][name])
        assert other.pop("current_mean") == pytest.approx(entry["current_mean"])  # summation order
        assert other == {key: value for key, value in entry.items() if key != "current_mean"}


def test_profile_named_by_the_version_tag_is_used(store, tmp_path):
    inputs = write(tmp_path / "current", make_customers(3_000, seed=9, with_label=False))

    result = drift.run(store.spec(inputs, version="3"), log=lambda _: None)

    assert result.details["drifted_features"] == ["age"]
    assert result.details["model"]["profile_uri"].endswith(f"/{PROFILE_ARTIFACT}")


def test_categorical_feature_drifts_when_unseen_values_take_over(store, tmp_path):
    same = make_customers(2000, seed=12, with_label=False)
    same["region"] = ["south", "north"] * 1000
    moved = same.copy()
    moved["region"] = ["east"] * 1500 + ["north"] * 500

    stable = drift.run(store.spec(write(tmp_path / "same", same), version="4"), log=lambda _: None)
    shifted = drift.run(store.spec(write(tmp_path / "moved", moved), version="4"), log=lambda _: None)

    assert stable.details["features"]["region"]["psi"] < 0.01 and stable.details["drift"] is False
    region = shifted.details["features"]["region"]
    assert region["type"] == "categorical" and region["ks_pvalue"] is None
    assert region["psi"] > 1.0 and shifted.details["drifted_features"] == ["region"]


def test_model_version_without_a_profile_is_a_clear_error(store, tmp_path):
    inputs = write(tmp_path / "current", make_customers(100, seed=10, with_label=False))

    with pytest.raises(JobInputError) as caught:
        drift.run(store.spec(inputs, version="2"), log=lambda _: None)
    assert str(caught.value) == (
        "model churn version 2 has no reference profile (reference_profile.json in its training run): "
        "retrain it with RetrainModelOperator"
    )


def test_current_data_without_a_profiled_feature_is_named(store, tmp_path):
    inputs = write(tmp_path / "current", make_customers(100, seed=11, with_label=False).drop(columns=["age"]))

    with pytest.raises(JobInputError) as caught:
        drift.run(store.spec(inputs), log=lambda _: None)
    assert str(caught.value) == f"input {inputs} does not match the reference profile: missing column(s) age"
