"""The ``train`` job in-process against a SQLite MLflow store: a training that registers a version,
one-line errors that register nothing, and the training operator's pod that runs the job.

The bad-input cases use the training functions of :mod:`tests.unit.runtime.training.functions`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.training import job
from tests._support.churn_sample import FEATURES, make_customers, write_customers
from tests.unit.runtime.training.conftest import CHURN_TRAIN, Store
from tests.unit.runtime.training.functions import FUNCTIONS

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
    assert set(result.metrics) == {
        "accuracy",
        "roc_auc",
        "train_rows",
        "holdout_rows",
        "duration_s",
        "peak_rss_mb",
    }
    assert result.metrics["peak_rss_mb"] > 0
    assert result.metrics["accuracy"] > 0.7
    assert len(result.input_digest) == 64
    # the runtime never ends the task's run: the operator does
    assert store.client.get_run(run_id).info.status == "RUNNING"


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
            {"training_function": f"{FUNCTIONS}:returns_none"},
            "good",
            f"training function {FUNCTIONS}:returns_none returned no model",
        ),
        (
            {"training_function": f"{FUNCTIONS}:returns_metrics_only"},
            "good",
            f"training function {FUNCTIONS}:returns_metrics_only returned a dict without a 'model' key "
            "(keys: accuracy, roc_auc)",
        ),
        (
            {"training_function": f"{FUNCTIONS}:returns_a_string"},
            "good",
            f"training function {FUNCTIONS}:returns_a_string returned a builtins.str, not a supported model",
        ),
        (
            {"training_function": f"{FUNCTIONS}:returns_bad_metrics"},
            "good",
            "metric 'accuracy' returned by training function",
        ),
        (
            {"training_function": f"{FUNCTIONS}:raises"},
            "good",
            f"training function {FUNCTIONS}:raises failed: ValueError: learning_rate must be positive",
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
        job.run(store.spec(inputs, store.new_run(), model_name=name, training_key=f"k/{name}", **params))

    error = str(caught.value)
    assert message in error
    assert "\n" not in error
    assert store.versions(name) == []
    assert not store.client.search_registered_models(f"name = '{name}'")


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
