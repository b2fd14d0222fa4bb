"""Reference profiles: statistics, bins, samples and categorical frequencies; storing and loading one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.profile import (
    OTHER,
    PROFILE_ARTIFACT,
    bin_counts,
    build_profile,
    load_profile,
    profile_uri,
)
from tests._support.churn_sample import FEATURES, make_customers


def test_numeric_profile_holds_statistics_quantile_bins_and_a_bounded_sample():
    frame = make_customers(5000, seed=3)
    profile = build_profile(pa.Table.from_pandas(frame), list(FEATURES), sample_size=500)

    assert profile["version"] == 1 and profile["rows"] == 5000
    assert list(profile["features"]) == list(FEATURES)
    charges = profile["features"]["monthly_charges"]
    values = frame["monthly_charges"]
    assert charges["type"] == "numeric" and (charges["count"], charges["missing"]) == (5000, 0)
    assert charges["mean"] == pytest.approx(values.mean())
    assert charges["std"] == pytest.approx(values.std())
    assert (charges["min"], charges["max"]) == (values.min(), values.max())
    assert list(charges["quantiles"]) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert charges["quantiles"]["p50"] == pytest.approx(values.median())
    # ten quantile bins of a continuous feature each hold about a tenth of the rows
    assert len(charges["bin_edges"]) == len(charges["bin_fractions"]) == 10
    assert charges["bin_edges"] == sorted(set(charges["bin_edges"]))
    assert sum(charges["bin_fractions"]) == pytest.approx(1.0)
    assert max(abs(f - 0.1) for f in charges["bin_fractions"]) < 0.01
    assert len(charges["sample"]) == 500 and set(charges["sample"]) <= set(values)
    json.dumps(profile, allow_nan=False)


def test_feature_with_few_distinct_values_gets_one_bin_per_value():
    frame = make_customers(3000, seed=4)
    contract = build_profile(frame, ["contract_months"])["features"]["contract_months"]

    assert contract["bin_edges"] == [1.0, 12.0, 24.0]
    shares = frame["contract_months"].value_counts(normalize=True)
    assert contract["bin_fractions"] == pytest.approx([shares[1.0], shares[12.0], shares[24.0]])


def test_same_data_and_seed_give_the_same_profile_and_another_seed_another_sample():
    frame = make_customers(3000, seed=5)
    first = build_profile(frame, ["tenure_months"], sample_size=100, seed=1)
    again = build_profile(frame, ["tenure_months"], sample_size=100, seed=1)
    other = build_profile(frame, ["tenure_months"], sample_size=100, seed=2)

    assert first == again
    assert first["features"]["tenure_months"]["sample"] != other["features"]["tenure_months"]["sample"]


def test_missing_values_are_counted_and_left_out_of_the_statistics():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, np.inf, None, 5.0]})
    entry = build_profile(frame, ["x"])["features"]["x"]

    assert (entry["count"], entry["missing"]) == (3, 3)
    assert entry["mean"] == 3.0 and entry["max"] == 5.0
    assert sorted(entry["sample"]) == [1.0, 3.0, 5.0]


def test_categorical_profile_keeps_the_top_50_values_and_folds_the_rest_into_other():
    values = [f"plan-{i}" for i in range(60) for _ in range(60 - i)] + [None] * 10
    entry = build_profile(pd.DataFrame({"plan": values}), ["plan"])["features"]["plan"]

    assert entry["type"] == "categorical" and entry["missing"] == 10
    assert len(entry["frequencies"]) == 51 and "plan-49" in entry["frequencies"]
    assert "plan-50" not in entry["frequencies"]
    total = entry["count"]
    assert entry["frequencies"]["plan-0"] == pytest.approx(60 / total)
    assert entry["frequencies"][OTHER] == pytest.approx(sum(range(1, 11)) / total)
    assert sum(entry["frequencies"].values()) == pytest.approx(1.0)


def test_profiling_a_column_the_data_lacks_names_it_and_the_columns():
    with pytest.raises(JobInputError) as caught:
        build_profile(make_customers(10), ["tenure_months", "plan"])
    message = str(caught.value)
    assert "plan" in message and "monthly_charges" in message and "\n" not in message


def test_bin_counts_put_values_outside_the_reference_range_in_the_outer_bins():
    counts = bin_counts([0.0, 10.0, 20.0], np.array([-5.0, 0.0, 9.9, 10.0, 25.0, 1e9, np.nan]))
    assert counts.tolist() == [3, 1, 2]


def test_profile_logged_in_a_run_loads_back_and_a_run_without_one_gives_none(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("profiles", artifact_location=(tmp_path / "art").as_uri())
    with_profile = client.create_run(experiment).info.run_id
    without = client.create_run(experiment).info.run_id
    profile = build_profile(make_customers(500, seed=6), list(FEATURES))
    client.log_dict(with_profile, profile, PROFILE_ARTIFACT)

    assert load_profile(client, with_profile) == profile
    assert load_profile(client, without) is None
    assert profile_uri(with_profile) == f"runs:/{with_profile}/reference_profile.json"
