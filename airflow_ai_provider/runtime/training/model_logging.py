"""Logging a training into the task's MLflow run: params, metrics, dataset, profile, and the model itself.

The model is logged with an inferred signature, an input example and explicit pip requirements
(default: pins of the installed libraries, so MLflow's own requirement inference, which takes
seconds, never runs), under the run's experiment and with MLflow's uv project detection off.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.runtime.contract.environment import scoped_environ
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.tracking import mlflow_errors
from airflow_ai_provider.runtime.training import data as training_data

if TYPE_CHECKING:
    import pandas as pd

    from airflow_ai_provider.runtime.contract.params import TrainParams
    from airflow_ai_provider.runtime.contract.spec import JobSpec
    from airflow_ai_provider.runtime.training.data import TrainingData
    from airflow_ai_provider.runtime.training.user_code import Trained

MODEL_ARTIFACT = "model"
#: MLflow settings while the model is logged (see :func:`log_model`).
NO_UV_DETECTION = {"MLFLOW_UV_AUTO_DETECT": "false", "MLFLOW_LOG_UV_FILES": "false"}
SIGNATURE_ROWS = 1000
EXAMPLE_ROWS = 5
DEFAULT_PINS = ("scikit-learn", "pandas", "numpy", "cloudpickle")


def log_training(
    client: Any,
    spec: JobSpec,
    params: TrainParams,
    trained: Trained,
    training: TrainingData,
    log: Callable[[str], None],
) -> Any:
    """Log the run records, the model and the reference profile into ``spec.mlflow.run_id``; return
    MLflow's ``ModelInfo`` of the logged model."""
    from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile

    run_id = spec.mlflow.run_id or ""
    with mlflow_errors("cannot log the training run", spec.mlflow.tracking_uri):
        log_run_records(client, run_id, params, trained.metrics, spec.inputs, training)
        experiment_id = spec.mlflow.experiment_id or client.get_run(run_id).info.experiment_id
        features = training.frame[training.features]
        model_info = log_model(trained, features, params, run_id, experiment_id, log)
        client.log_dict(run_id, build_profile(training.table, training.features), PROFILE_ARTIFACT)
    return model_info


def default_pip_requirements() -> list[str]:
    """Pins of the installed mlflow, scikit-learn, pandas, numpy and cloudpickle (those installed)."""
    import mlflow

    pins = [f"mlflow=={mlflow.__version__}"]
    for distribution in DEFAULT_PINS:
        try:
            pins.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def log_run_records(
    client: Any,
    run_id: str,
    params: TrainParams,
    metrics: dict[str, float],
    inputs: list[str],
    training: TrainingData,
) -> None:
    """Hyper-parameters, metrics (before the model, so MLflow links them to it) and the dataset."""
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, now_ms, 0) for name, value in metrics.items()],
        params=[Param(name, _param_value(value)) for name, value in params.hyperparameters.items()],
    )
    source = ",".join(inputs)
    dataset = Dataset(
        name=inputs[0].rstrip("/").rsplit("/", 1)[-1] or "training-data",
        digest=training.data.digest[:32],
        source_type="s3" if source.startswith("s3://") else "local",
        source=json.dumps({"uri": source, "sha256": training.data.digest}),
        schema=json.dumps(training_data.schema(training.table)),
        profile=json.dumps({"num_rows": training.table.num_rows}),
    )
    client.log_inputs(
        run_id, datasets=[DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
    )


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def log_model(
    trained: Trained,
    features: pd.DataFrame,
    params: TrainParams,
    run_id: str,
    experiment_id: str,
    log: Callable[[str], None],
) -> Any:
    """Log the model into the run (and its experiment) with a signature, an input example and explicit
    requirements.

    MLflow's uv project detection is off meanwhile: run from a folder holding ``uv.lock`` (as a local
    runtime on a worker may be), MLflow would copy that project's lock file into the model and
    record its environment instead of the model's requirements.
    """
    requirements = params.pip_requirements or default_pip_requirements()
    example = features.head(EXAMPLE_ROWS)
    # MLflow files a logged model under the fluent API's current experiment, not its run's
    experiment = {"MLFLOW_EXPERIMENT_ID": experiment_id, "MLFLOW_EXPERIMENT_NAME": None}
    with scoped_environ({**NO_UV_DETECTION, **experiment}):
        info = _log_flavor(trained, features, example, requirements, params, run_id)
    log(f"logged the model as {info.model_uri} in run {run_id} (requirements: {', '.join(requirements)})")
    return info


def _log_flavor(
    trained: Trained,
    features: pd.DataFrame,
    example: pd.DataFrame,
    requirements: list[str],
    params: TrainParams,
    run_id: str,
) -> Any:
    """Log ``trained`` with its flavor's API: scikit-learn (cloudpickle) or pyfunc."""
    import mlflow
    from mlflow.models import Model, infer_signature

    if trained.flavor == "sklearn":
        sample = features.head(SIGNATURE_ROWS)
        try:
            predictions = trained.model.predict(sample)
        except Exception as err:
            raise JobInputError(
                f"the model returned by {params.training_function} cannot predict on its training "
                f"features: {type(err).__name__}: {one_line(err)}"
            ) from None
        info = mlflow.sklearn.log_model(
            trained.model,
            name=MODEL_ARTIFACT,
            run_id=run_id,
            signature=infer_signature(sample, predictions),
            input_example=example,
            pip_requirements=requirements,
            serialization_format="cloudpickle",
        )
    else:  # a PythonModel: MLflow infers the signature from the input example
        info = Model.log(
            artifact_path=None,
            name=MODEL_ARTIFACT,
            flavor=mlflow.pyfunc,
            python_model=trained.model,
            run_id=run_id,
            input_example=example,
            pip_requirements=requirements,
        )
    return info
