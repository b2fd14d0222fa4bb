"""The train job's test store (a SQLite MLflow tracking store and registry), its training data and one
training shared by the package's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.training import job
from tests._support.churn_sample import mlflow_uris, write_customers

CHURN_TRAIN = "dag_templates.include.churn_training:train"
HYPERPARAMETERS = {"max_iter": 20, "learning_rate": 0.2}
# Every entry point through which MLflow infers a model's pip requirements (the slow path).
INFERENCE_FUNCTIONS = (
    "mlflow.models.infer_pip_requirements",
    "mlflow.utils.environment.infer_pip_requirements",
    "mlflow.utils.environment._infer_requirements",
    "mlflow.utils.requirements_utils._infer_requirements",
    "mlflow.utils.environment.export_uv_requirements",
)
LINEAGE = {
    "dag_id": "retrain_churn",
    "dag_run_id": "manual__2026-01-01T00:00:00+00:00",
    "task_id": "train",
    "image": "registry.local/churn-runtime:1.0",
    "training_key": "retrain_churn/manual__2026-01-01T00:00:00+00:00/train/-1",
    "intended_use": "Rank customers by churn risk for retention offers.",
}


class Store:
    """A SQLite tracking store and registry with one experiment whose artifacts stay in tmp."""

    def __init__(self, root: Path) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifact_root = (root / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment_id = self.client.create_experiment(
            "training-tests", artifact_location=self.artifact_root
        )

    def new_run(self) -> str:
        """A task run as the operator books it: created, RUNNING, never ended by the runtime."""
        return self.client.create_run(self.experiment_id).info.run_id

    def spec(self, inputs: str, run_id: str, **params: Any) -> JobSpec:
        return JobSpec.from_dict(
            {
                "job": "train",
                "inputs": [inputs],
                "mlflow": {"tracking_uri": self.tracking_uri, "run_id": run_id},
                "params": {
                    "training_function": CHURN_TRAIN,
                    "label_column": "churned",
                    "id_columns": ["customer_id"],
                    "hyperparameters": HYPERPARAMETERS,
                    **params,
                },
            }
        )

    def versions(self, name: str) -> list[Any]:
        return list(self.client.search_model_versions(f"name = '{name}'"))

    def artifact_text(self, run_id: str, path: str, scratch: Path) -> str:
        return Path(self.client.download_artifacts(run_id, path, str(scratch))).read_text()


@pytest.fixture(scope="package")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("train-store"))


@pytest.fixture(scope="package")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("train-data")
    write_customers(folder / "customers", 2_000, seed=11, n_files=2, with_label=True)
    return f"file://{folder / 'customers'}"


@pytest.fixture(scope="package")
def trained(store: Store, training_data: str) -> dict[str, Any]:
    """One training of ``churn`` (version 1) with spies on MLflow's requirement inference.

    The job runs in-process and points MLflow's URIs (and ``MLFLOW_*_URI`` in the environment) at this
    store; this package fixture is set up before any module's or test's reset saves them, so it puts
    them back itself: the session's later tests (the integration ones) must not use this store."""
    run_id = store.new_run()
    spies = {target: mock.patch(target, autospec=True) for target in INFERENCE_FUNCTIONS}
    started = {target: patcher.start() for target, patcher in spies.items()}
    lines: list[str] = []
    try:
        with mlflow_uris(store.tracking_uri):
            spec = store.spec(training_data, run_id, model_name="churn", **LINEAGE)
            result = job.run(spec, log=lines.append)
    finally:
        for patcher in spies.values():
            patcher.stop()
    return {
        "result": result,
        "run_id": run_id,
        "lines": lines,
        "inference_calls": {target: spy.call_count for target, spy in started.items()},
    }
