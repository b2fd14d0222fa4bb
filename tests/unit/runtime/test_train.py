"""The ``train`` job in-process against a SQLite MLflow store: registration with lineage, reference
profile and model card, idempotent retries, one-line errors that register nothing; the model card
itself; and the training operator's pod.

The bad-input cases use the small training functions defined at the bottom of this module, imported
by the runtime as ``tests.unit.runtime.test_train:<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_ai_provider.runtime import train
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.model_card import MAX_DESCRIPTION_CHARS, ModelCard
from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile
from dag_templates.include.churn_sample import FEATURES, make_customers, write_customers

CHURN_TRAIN = "dag_templates.include.churn_training:train"
HERE = "tests.unit.runtime.test_train"
HYPERPARAMETERS = {"max_iter": 20, "learning_rate": 0.2}
# Every entry point through which MLflow infers a model's pip requirements (the slow path).
INFERENCE_FUNCTIONS = (
    "mlflow.models.infer_pip_requirements",
    "mlflow.utils.environment.infer_pip_requirements",
    "mlflow.utils.environment._infer_requirements",
    "mlflow.utils.requirements_utils._infer_requirements",
    "mlflow.utils.environment.export_uv_requirements",
)


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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("train-store"))


@pytest.fixture(scope="module")
def training_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("train-data")
    write_customers(folder / "customers", 2_000, seed=11, n_files=2, with_label=True)
    return f"file://{folder / 'customers'}"


LINEAGE = {
    "dag_id": "retrain_churn",
    "dag_run_id": "manual__2026-01-01T00:00:00+00:00",
    "task_id": "train",
    "image": "registry.local/churn-runtime:1.0",
    "training_key": "retrain_churn/manual__2026-01-01T00:00:00+00:00/train/-1",
    "intended_use": "Rank customers by churn risk for retention offers.",
}


@pytest.fixture(scope="module")
def trained(store: Store, training_data: str) -> dict[str, Any]:
    """One training of ``churn`` with spies on MLflow's requirement inference."""
    run_id = store.new_run()
    spies = {target: mock.patch(target, autospec=True) for target in INFERENCE_FUNCTIONS}
    started = {target: patcher.start() for target, patcher in spies.items()}
    lines: list[str] = []
    try:
        result = train.run(store.spec(training_data, run_id, model_name="churn", **LINEAGE), log=lines.append)
    finally:
        for patcher in spies.values():
            patcher.stop()
    return {
        "result": result,
        "run_id": run_id,
        "lines": lines,
        "inference_calls": {target: spy.call_count for target, spy in started.items()},
    }


# --- a successful training -------------------------------------------------------------------------


def test_training_registers_a_version_under_the_challenger_alias(store: Store, trained: dict) -> None:
    result, run_id = trained["result"], trained["run_id"]

    assert result.status == "success"
    assert result.model == {"name": "churn", "version": "1", "alias": "challenger"}
    assert store.client.get_model_version_by_alias("churn", "challenger").version == 1
    assert result.details == {
        "model_name": "churn",
        "version": "1",
        "alias": "challenger",
        "model_uri": "models:/churn/1",
        "run_id": run_id,
        "training_data_digest": result.input_digest,
        "rows": 2_000,
        "features": list(FEATURES),
        "label": "churned",
        "reference_profile_uri": f"runs:/{run_id}/reference_profile.json",
        "model_card_artifact": f"runs:/{run_id}/model_card.md",
        "reused": False,
    }
    assert set(result.metrics) == {"accuracy", "roc_auc", "train_rows", "holdout_rows", "duration_s"}
    assert result.metrics["accuracy"] > 0.7
    assert len(result.input_digest) == 64
    # the runtime never ends the task's run: the operator does
    assert store.client.get_run(run_id).info.status == "RUNNING"


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

    assert trained["inference_calls"] == dict.fromkeys(INFERENCE_FUNCTIONS, 0)
    local = mlflow.artifacts.download_artifacts(
        "models:/churn/1", dst_path=str(tmp_path), tracking_uri=store.tracking_uri
    )
    requirements = Path(local, "requirements.txt").read_text().splitlines()
    assert requirements == train.default_pip_requirements()
    assert any(line.startswith("scikit-learn==") for line in requirements)
    # tests run from the repository, a uv project: its lock file must not end up in the model
    assert not Path(local, "uv.lock").exists()


def test_registered_model_loads_with_its_signature_and_predicts(store: Store, trained: dict) -> None:
    import mlflow

    from dag_templates.include.churn_sample import mlflow_uris

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


# --- retries ---------------------------------------------------------------------------------------


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
        **{**LINEAGE, "training_function": f"{HERE}:must_not_run"},
    )

    again = train.run(spec, log=lines.append)

    assert [int(v.version) for v in store.versions("churn")] == [1]
    assert store.client.get_model_version_by_alias("churn", "challenger").version == 1
    assert again.details == {**trained["result"].details, "reused": True}
    assert {**again.metrics, "duration_s": 0} == {**trained["result"].metrics, "duration_s": 0}
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
        train.run(spec)

    assert caught.value.retryable
    assert store.versions("churn-flaky") == []
    assert store.client.get_registered_model("churn-flaky").aliases == {}
    retried = train.run(spec)
    assert (retried.details["version"], retried.details["reused"]) == ("1", False)
    assert [int(v.version) for v in store.versions("churn-flaky")] == [1]
    assert store.client.get_model_version_by_alias("churn-flaky", "challenger").version == 1


def test_another_training_key_registers_a_new_version(store: Store, training_data: str) -> None:
    key = {"training_key": "other/run/train/-1"}
    first = train.run(store.spec(training_data, store.new_run(), model_name="churn-keys", **key))
    second = train.run(
        store.spec(
            training_data, store.new_run(), model_name="churn-keys", training_key="other/run2/train/-1"
        )
    )

    assert (first.details["version"], second.details["version"]) == ("1", "2")
    assert store.client.get_model_version_by_alias("churn-keys", "challenger").version == 2


def test_python_model_is_logged_as_pyfunc(store: Store, training_data: str) -> None:
    import mlflow

    from dag_templates.include.churn_sample import mlflow_uris

    result = train.run(
        store.spec(
            training_data,
            store.new_run(),
            model_name="constant",
            alias="candidate",
            training_function=f"{HERE}:python_model",
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


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "data", "message"),
    [
        (
            {"training_function": "tests.unit.runtime.no_such_module:train"},
            "good",
            "cannot import module 'tests.unit.runtime.no_such_module' of training function "
            "tests.unit.runtime.no_such_module:train: No module named 'tests.unit.runtime.no_such_module'",
        ),
        (
            {"training_function": "dag_templates.include.churn_training:fit"},
            "good",
            "module 'dag_templates.include.churn_training' has no function 'fit'",
        ),
        (
            {"training_function": f"{HERE}:returns_none"},
            "good",
            f"training function {HERE}:returns_none returned no model",
        ),
        (
            {"training_function": f"{HERE}:returns_metrics_only"},
            "good",
            f"training function {HERE}:returns_metrics_only returned a dict without a 'model' key "
            "(keys: accuracy, roc_auc)",
        ),
        (
            {"training_function": f"{HERE}:returns_a_string"},
            "good",
            f"training function {HERE}:returns_a_string returned a builtins.str, not a supported model",
        ),
        (
            {"training_function": f"{HERE}:returns_bad_metrics"},
            "good",
            "metric 'accuracy' returned by training function",
        ),
        (
            {"training_function": f"{HERE}:raises"},
            "good",
            f"training function {HERE}:raises failed: ValueError: learning_rate must be positive",
        ),
        ({}, "empty", "has no rows: nothing to train on"),
        (
            {"label_column": "churned"},
            "unlabelled",
            "label column 'churned' not in training data",
        ),
        ({"alias": "latest"}, "good", "alias 'latest' is not valid"),
    ],
    ids=[
        "module-not-importable",
        "function-missing",
        "returns-none",
        "returns-dict-of-numbers",
        "returns-unsupported-object",
        "non-numeric-metric",
        "function-raises",
        "empty-data",
        "missing-label-column",
        "reserved-alias",
    ],
)
def test_bad_input_fails_with_one_line_and_registers_nothing(
    store: Store, training_data: str, tmp_path: Path, params: dict, data: str, message: str
) -> None:
    if data == "empty":
        frame = make_customers(0)
        inputs = str(tmp_path / "empty.parquet")
        frame.to_parquet(inputs, index=False)
    elif data == "unlabelled":
        write_customers(tmp_path / "unlabelled", 100, seed=1)
        inputs = str(tmp_path / "unlabelled")
    else:
        inputs = training_data
    name = f"bad-{data}-{abs(hash(json.dumps(params, sort_keys=True)))}"

    with pytest.raises(JobInputError) as caught:
        train.run(store.spec(inputs, store.new_run(), model_name=name, training_key=f"k/{name}", **params))

    error = str(caught.value)
    assert message in error
    assert "\n" not in error
    assert store.versions(name) == []
    assert not store.client.search_registered_models(f"name = '{name}'")


def test_missing_label_error_lists_the_available_columns(store: Store, tmp_path: Path) -> None:
    write_customers(tmp_path / "unlabelled", 100, seed=1)

    with pytest.raises(JobInputError, match="label column 'target'") as caught:
        train.run(
            store.spec(str(tmp_path / "unlabelled"), store.new_run(), model_name="x", label_column="target")
        )

    assert f"(columns: customer_id, {', '.join(FEATURES)})" in str(caught.value)


# --- the model card --------------------------------------------------------------------------------


def _card(**changes: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "model_name": "price",
        "version": "4",
        "alias": "challenger",
        "intended_use": None,
        "limitations": "Trained on one region | not others.",
        "data_uri": "s3://bucket/prices/",
        "data_digest": "ab" * 32,
        "rows": 1_000,
        "features": ["area", "rooms"],
        "label": "price",
        "label_summary": train.label_summary(__import__("pandas").Series([100.0, 250.5, 75.25, 300.0])),
        "metrics": {"rmse": 12.3456789},
        "hyperparameters": {"alpha": 0.5, "layers": [8, 4]},
        "code_reference": "pricing.train:fit",
        "flavor": "sklearn",
        "environment": None,
        "lineage": {"DAG": "prices", "DAG run": "", "Task": "fit"},
        "mlflow_run_id": "abc123",
        "reference_profile_uri": "runs:/abc123/reference_profile.json",
    }
    return ModelCard(**{**fields, **changes})


def test_model_card_shows_label_statistics_escaped_cells_and_placeholders() -> None:
    text = _card().to_markdown()

    assert "Distribution of `price`:" in text and "| mean | 181.4375 |" in text
    assert "Trained on one region | not others." in text  # free text kept as written
    assert "| rmse | 12.3457 |" in text
    assert "| layers | `[8, 4]` |" in text
    assert "Not stated. Set `intended_use` on the training task." in text
    assert "| Task | `fit` |" in text and "DAG run" not in text  # empty lineage entries are left out
    assert "| Model URI | `models:/price/4` |" in text


def test_model_card_escapes_pipes_in_table_cells() -> None:
    text = _card(hyperparameters={"kernel": "a|b"}).to_markdown()

    assert "| kernel | `a\\|b` |" in text


def test_long_model_card_description_is_cut_with_a_pointer_to_the_full_card() -> None:
    card = _card(features=[f"feature_{i}" for i in range(1_000)])

    assert len(card.to_markdown()) > MAX_DESCRIPTION_CHARS
    description = card.description()
    assert len(description) <= MAX_DESCRIPTION_CHARS
    assert description.endswith("full card: `runs:/abc123/model_card.md`)\n")


def test_label_summary_counts_classes_of_integer_and_string_labels() -> None:
    import pandas as pd

    assert train.label_summary(pd.Series([0, 1, 1, 1])) == {"classes": {"1": 3, "0": 1}}
    assert train.label_summary(pd.Series(["stay", "churn", "stay"])) == {"classes": {"stay": 2, "churn": 1}}


# --- the operator's pod ----------------------------------------------------------------------------


def test_training_pod_with_gpu_is_schema_valid_and_runs_the_train_job() -> None:
    import kubernetes_validate
    from kubernetes.client import ApiClient
    from kubernetes.client import models as k8s

    from airflow_ai_provider.operators.training import RetrainModelOperator

    op = RetrainModelOperator(
        task_id="train",
        training_function=CHURN_TRAIN,
        input_uri="s3://data/training/",
        label_column="churned",
        model_name="churn",
        execution_mode="kubernetes",
        image="registry.local/churn-trainer:2.1",
        namespace="ml",
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "4", "memory": "16Gi"}, limits={"memory": "16Gi", "nvidia.com/gpu": "1"}
        ),
        node_selector={"accelerator": "nvidia-l4"},
        tolerations=[k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
    )
    spec = JobSpec.from_dict(
        {
            "job": "train",
            "inputs": ["s3://data/training/"],
            "mlflow": {"tracking_uri": "http://mlflow:5000", "run_id": "abc"},
            "params": {"training_function": CHURN_TRAIN, "label_column": "churned", "model_name": "churn"},
        }
    )
    op.configure_pod_for(spec)
    manifest = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(dry_run=True))

    kubernetes_validate.validate(manifest, "1.33.0", strict=True)
    main = manifest["spec"]["containers"][0]
    assert main["image"] == "registry.local/churn-trainer:2.1"
    assert main["args"][:2] == ["train", "--spec-json"]
    assert JobSpec.from_json(main["args"][2]) == spec
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert manifest["spec"]["nodeSelector"] == {"accelerator": "nvidia-l4"}
    assert manifest["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert (op.retries, op.retry_delay.total_seconds()) == (1, 300)


def test_operator_rejects_a_malformed_training_function_when_the_dag_is_parsed() -> None:
    from airflow_ai_provider.exceptions import AiProviderConfigError
    from airflow_ai_provider.operators.training import RetrainModelOperator

    with pytest.raises(AiProviderConfigError, match="'package.module:function'"):
        RetrainModelOperator(
            task_id="train",
            training_function="dag_templates.include.churn_training.train",
            input_uri="s3://data/training/",
            label_column="churned",
            model_name="churn",
        )


# --- training functions used above -----------------------------------------------------------------


def must_not_run(ctx: train.TrainingContext) -> Any:
    raise AssertionError("a retry that found its version must not train again")


def returns_none(ctx: train.TrainingContext) -> None:
    return None


def returns_metrics_only(ctx: train.TrainingContext) -> dict[str, float]:
    return {"accuracy": 0.9, "roc_auc": 0.95}


def returns_a_string(ctx: train.TrainingContext) -> str:
    return "model"


def returns_bad_metrics(ctx: train.TrainingContext) -> tuple[Any, dict[str, Any]]:
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit(ctx.data[ctx.features], ctx.data[ctx.label])
    return model, {"accuracy": "high"}


def raises(ctx: train.TrainingContext) -> Any:
    raise ValueError("learning_rate must be positive,\ngot -1")


def python_model(ctx: train.TrainingContext) -> dict[str, Any]:
    import mlflow

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return [0] * len(model_input)

    return {"model": Constant(), "metrics": {"rows": float(len(ctx.data))}}
