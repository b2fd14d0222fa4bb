"""Registration: lineage tags, the model card as description, and idempotent retries by training key
(reuse without training; a registry failure before the version exists registers nothing)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from airflow_ai_provider.runtime.training import job
from tests.unit.runtime.training.conftest import CHURN_TRAIN, LINEAGE, Store
from tests.unit.runtime.training.functions import FUNCTIONS


def test_version_carries_lineage_tags(store: Store, trained: dict) -> None:
    result, run_id = trained["result"], trained["run_id"]
    version = store.client.get_model_version("churn", "1")

    assert version.run_id == run_id
    assert version.tags == {
        "airflow.dag_id": "retrain_churn",
        "airflow.run_id": "manual__2026-01-01T00:00:00+00:00",
        "airflow.task_id": "train",
        "ai.training_key": LINEAGE["training_key"],
        "ai.image": "registry.local/churn-runtime:1.0",
        "ai.training_data_digest": result.input_digest,
        "ai.training_data_uri": result.input_source,
        "ai.code_reference": CHURN_TRAIN,
        "ai.reference_profile": f"runs:/{run_id}/reference_profile.json",
    }


def test_version_description_is_the_logged_model_card(store: Store, trained: dict, tmp_path: Path) -> None:
    version = store.client.get_model_version("churn", "1")
    card = store.artifact_text(trained["run_id"], "model_card.md", tmp_path)

    assert version.description == card
    assert card.startswith("# Model card: churn version 1\n")
    for expected in (
        LINEAGE["intended_use"],
        trained["result"].input_digest,
        "| Rows | 2,000 |",
        "Class balance of `churned`",
        "| accuracy |",
        "| max_iter | `20` |",
        f"`{CHURN_TRAIN}`",
        "| DAG | `retrain_churn` |",
        "None stated.",  # no limitations given
    ):
        assert expected in card


def test_retry_with_the_same_training_key_reuses_the_version_without_training(
    store: Store, trained: dict, training_data: str
) -> None:
    # An earlier try registered version 1 and failed before moving the alias.
    store.client.delete_registered_model_alias("churn", "challenger")
    lines: list[str] = []
    spec = store.spec(
        training_data,
        trained["run_id"],
        model_name="churn",
        **{**LINEAGE, "training_function": f"{FUNCTIONS}:must_not_run"},
    )

    again = job.run(spec, log=lines.append)

    assert [int(v.version) for v in store.versions("churn")] == [1]
    assert store.client.get_model_version_by_alias("churn", "challenger").version == 1
    assert again.details == {**trained["result"].details, "reused": True}
    same = {"duration_s": 0, "peak_rss_mb": 0}
    assert {**again.metrics, **same} == {**trained["result"].metrics, **same}
    assert again.model == trained["result"].model
    assert any("reusing it, not training again" in line for line in lines)


def test_registry_failure_before_the_version_exists_registers_nothing_and_a_retry_trains_again(
    store: Store, training_data: str
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from airflow_ai_provider.runtime.contract.errors import JobServiceError

    spec = store.spec(
        training_data, store.new_run(), model_name="churn-flaky", training_key="flaky/run/train/-1"
    )
    outage = MlflowException("registry is restarting", error_code="TEMPORARILY_UNAVAILABLE")

    with (
        mock.patch.object(MlflowClient, "create_model_version", side_effect=outage),
        pytest.raises(JobServiceError, match="cannot register model 'churn-flaky'") as caught,
    ):
        job.run(spec)

    assert caught.value.retryable
    assert store.versions("churn-flaky") == []
    assert store.client.get_registered_model("churn-flaky").aliases == {}
    retried = job.run(spec)
    assert (retried.details["version"], retried.details["reused"]) == ("1", False)
    assert [int(v.version) for v in store.versions("churn-flaky")] == [1]
    assert store.client.get_model_version_by_alias("churn-flaky", "challenger").version == 1


def test_another_training_key_registers_a_new_version(store: Store, training_data: str) -> None:
    key = {"training_key": "other/run/train/-1"}
    first = job.run(store.spec(training_data, store.new_run(), model_name="churn-keys", **key))
    second = job.run(
        store.spec(
            training_data, store.new_run(), model_name="churn-keys", training_key="other/run2/train/-1"
        )
    )

    assert (first.details["version"], second.details["version"]) == ("1", "2")
    assert store.client.get_model_version_by_alias("churn-keys", "challenger").version == 2
