"""What a training logs into the task's MLflow run: reference profile, dataset input, metrics and
params, and the model (pinned requirements without MLflow's inference, signature, experiment, pyfunc)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile
from airflow_ai_provider.runtime.training import job
from airflow_ai_provider.runtime.training.model_logging import default_pip_requirements
from tests._support.churn_sample import FEATURES, make_customers
from tests.unit.runtime.training.conftest import INFERENCE_FUNCTIONS, Store
from tests.unit.runtime.training.functions import FUNCTIONS


def test_reference_profile_of_the_training_data_is_logged(
    store: Store, trained: dict, training_data: str, tmp_path: Path
) -> None:
    import pandas as pd

    profile = json.loads(store.artifact_text(trained["run_id"], PROFILE_ARTIFACT, tmp_path))
    frame = pd.concat(
        [pd.read_parquet(path) for path in sorted(Path(training_data[7:]).glob("*.parquet"))],
        ignore_index=True,
    )

    assert profile == json.loads(json.dumps(build_profile(frame, list(FEATURES))))
    assert profile["rows"] == 2_000


def test_training_data_is_a_dataset_input_with_its_digest(store: Store, trained: dict) -> None:
    run = store.client.get_run(trained["run_id"])
    (dataset_input,) = run.inputs.dataset_inputs

    assert {tag.key: tag.value for tag in dataset_input.tags} == {"mlflow.data.context": "training"}
    assert dataset_input.dataset.digest == trained["result"].input_digest[:32]
    source = json.loads(dataset_input.dataset.source)
    assert source == {"uri": trained["result"].input_source, "sha256": trained["result"].input_digest}


def test_metrics_and_hyperparameters_are_logged_in_the_run(store: Store, trained: dict) -> None:
    run = store.client.get_run(trained["run_id"])

    assert run.data.params == {"max_iter": "20", "learning_rate": "0.2"}
    assert run.data.metrics["accuracy"] == pytest.approx(trained["result"].metrics["accuracy"])


def test_pip_requirements_are_pinned_without_mlflow_inference(
    store: Store, trained: dict, tmp_path: Path
) -> None:
    import mlflow

    from tests._support.churn_sample import mlflow_uris

    assert trained["inference_calls"] == dict.fromkeys(INFERENCE_FUNCTIONS, 0)
    with mlflow_uris(store.tracking_uri):  # models:/ URIs resolve through the registry URI
        local = mlflow.artifacts.download_artifacts("models:/churn/1", dst_path=str(tmp_path))
    requirements = Path(local, "requirements.txt").read_text().splitlines()
    assert requirements == default_pip_requirements()
    assert any(line.startswith("scikit-learn==") for line in requirements)
    # tests run from the repository, a uv project: its lock file must not end up in the model
    assert not Path(local, "uv.lock").exists()


def test_registered_model_loads_with_its_signature_and_predicts(store: Store, trained: dict) -> None:
    import mlflow

    from tests._support.churn_sample import mlflow_uris

    with mlflow_uris(store.tracking_uri):
        model = mlflow.pyfunc.load_model("models:/churn@challenger")
    customers = make_customers(50, seed=99, with_label=False)[list(FEATURES)]

    assert model.metadata.get_input_schema().input_names() == list(FEATURES)
    assert set(model.predict(customers).tolist()) <= {0, 1}
    assert model.metadata.flavors["sklearn"]["serialization_format"] == "cloudpickle"


def test_model_is_logged_in_the_task_runs_experiment_and_artifact_store(store: Store, trained: dict) -> None:
    version = store.client.get_model_version("churn", "1")
    logged = store.client.get_logged_model(version.source.removeprefix("models:/"))

    assert logged.source_run_id == trained["run_id"]
    assert logged.experiment_id == store.experiment_id
    assert logged.artifact_location.startswith(store.artifact_root)


def test_python_model_is_logged_as_pyfunc(store: Store, training_data: str) -> None:
    import mlflow

    from tests._support.churn_sample import mlflow_uris

    result = job.run(
        store.spec(
            training_data,
            store.new_run(),
            model_name="constant",
            alias="candidate",
            training_function=f"{FUNCTIONS}:python_model",
            pip_requirements=["mlflow", "pandas"],
        )
    )

    assert result.details["version"] == "1" and result.details["alias"] == "candidate"
    with mlflow_uris(store.tracking_uri):
        model = mlflow.pyfunc.load_model("models:/constant@candidate")
    assert list(model.predict(make_customers(3, with_label=False)[list(FEATURES)])) == [0, 0, 0]
    local = Path(mlflow.artifacts.download_artifacts("models:/constant/1", tracking_uri=store.tracking_uri))
    assert Path(local, "requirements.txt").read_text().splitlines() == ["mlflow", "pandas"]
    assert not (local / "uv.lock").exists()  # the repository's uv project stays out of the model
