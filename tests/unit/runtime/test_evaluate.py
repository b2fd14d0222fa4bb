"""The evaluate job (quality gate) run in-process against a SQLite MLflow registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime import evaluate
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec
from tests._support.churn_sample import FEATURES, make_customers, train_and_register, write_customers

REGRESSION_FEATURES = ["tenure_months", "monthly_charges"]


@dataclass
class Store:
    tracking_uri: str
    root: Path
    churn_holdout: str
    charges_holdout: str

    def spec(self, model: str, version: str, champion: str | None = None, **params: Any) -> JobSpec:
        raw: dict[str, Any] = {
            "job": "evaluate",
            "inputs": [params.pop("inputs", self.churn_holdout)],
            "mlflow": {"tracking_uri": self.tracking_uri, "run_id": params.pop("run_id", None)},
            "model": {"name": model, "version": version},
            "params": {"label_column": "churned", **params},
        }
        if champion:
            raw["baseline_model"] = {"name": model, "version": champion}
        return JobSpec.from_dict(raw)

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def new_run(self) -> str:
        client = self.client()
        experiment = client.get_experiment_by_name("gate-tests") or None
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment("gate-tests", artifact_location=(self.root / "runs").as_uri())
        )
        return client.create_run(experiment_id).info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """``churn`` v1: a good classifier; v2: a weak one (one boosting round). ``charges`` v1: a
    linear regression of total charges on tenure and monthly charges."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from tests._support.churn_sample import mlflow_uris

    root = tmp_path_factory.mktemp("gate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    train_and_register(uri, "churn", alias=None, n_rows=4000, seed=0)
    train_and_register(uri, "churn", alias=None, n_rows=4000, seed=1, max_iter=1)
    frame = make_customers(3000, seed=21)
    regression = LinearRegression().fit(frame[REGRESSION_FEATURES], frame["total_charges"])
    with mlflow_uris(uri):
        mlflow.set_experiment("charges-training")  # explicit: never a leftover active experiment
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                regression,
                name="charges",
                signature=infer_signature(frame[REGRESSION_FEATURES].head(10)),
                pip_requirements=["scikit-learn"],
                registered_model_name="charges",
            )
    churn_holdout = write_customers(root / "holdout", 3000, seed=11, with_label=True)[0]
    holdout = make_customers(2000, seed=12)[[*REGRESSION_FEATURES, "total_charges"]]
    charges_holdout = str(root / "charges.parquet")
    pq.write_table(pa.Table.from_pandas(holdout, preserve_index=False), charges_holdout)
    return Store(uri, root, churn_holdout, charges_holdout)


def model_predictions(store: Store, name: str, version: str, frame: Any) -> np.ndarray:
    import mlflow

    from tests._support.churn_sample import mlflow_uris

    with mlflow_uris(store.tracking_uri):
        return np.asarray(mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(frame))


def test_good_challenger_without_champion_is_promoted_on_absolute_thresholds_only(store):
    from sklearn.metrics import accuracy_score

    run_id = store.new_run()
    spec = store.spec("churn", "1", min_metrics={"accuracy": 0.75, "roc_auc": 0.8}, run_id=run_id)

    result = evaluate.run(spec, log=lambda _: None)

    details = result.details
    assert details["decision"] == "promote"
    assert details["reasons"][0] == "no champion yet: absolute thresholds only"
    assert details["task_type"] == "classification" and details["champion"] is None
    holdout = make_customers(3000, seed=11)
    accuracy = accuracy_score(
        holdout["churned"], model_predictions(store, "churn", "1", holdout[list(FEATURES)])
    )
    assert result.metrics["challenger_accuracy"] == pytest.approx(accuracy)
    assert f"accuracy {evaluate._fmt(accuracy)} >= minimum 0.75" in details["reasons"]
    assert set(details["challenger"]["metrics"]) == {
        "accuracy",
        "f1",
        "roc_auc",
        "log_loss",
        "latency_ms_per_1k_rows",
    }
    assert not any(key.startswith("champion_") for key in result.metrics)
    assert details["thresholds"]["min_metrics"] == {"accuracy": 0.75, "roc_auc": 0.8}
    # the comparison is logged into the task's run
    client = store.client()
    assert {a.path for a in client.list_artifacts(run_id)} == {"comparison.json", "comparison.png"}
    logged = json.loads(
        Path(client.download_artifacts(run_id, "comparison.json", str(store.root))).read_text()
    )
    assert logged["decision"] == "promote" and logged["challenger"]["version"] == "1"
    assert (
        Path(client.download_artifacts(run_id, "comparison.png", str(store.root))).read_bytes()[:4]
        == b"\x89PNG"
    )


def test_challenger_below_an_absolute_minimum_is_rejected_naming_the_values(store):
    result = evaluate.run(store.spec("churn", "2", min_metrics={"accuracy": 0.75}), log=lambda _: None)

    accuracy = result.metrics["challenger_accuracy"]
    assert accuracy < 0.75
    assert result.details["decision"] == "reject"
    assert result.details["reasons"] == [
        f"accuracy {evaluate._fmt(accuracy)} < minimum 0.75",
        "no champion yet: absolute thresholds only",
    ]


def test_challenger_worse_than_the_champion_beyond_the_allowed_margin_is_rejected(store):
    spec = store.spec("churn", "2", champion="1", max_degradation={"accuracy": 0.01, "log_loss": 0.02})

    result = evaluate.run(spec, log=lambda _: None)

    m = result.metrics
    assert m["champion_accuracy"] - m["challenger_accuracy"] > 0.01
    assert result.details["decision"] == "reject"
    fmt = evaluate._fmt
    assert result.details["reasons"] == [
        f"accuracy {fmt(m['challenger_accuracy'])} is {fmt(m['champion_accuracy'] - m['challenger_accuracy'])} "
        f"below champion v1 ({fmt(m['champion_accuracy'])}), allowed 0.01",
        f"log_loss {fmt(m['challenger_log_loss'])} is {fmt(m['challenger_log_loss'] - m['champion_log_loss'])} "
        f"above champion v1 ({fmt(m['champion_log_loss'])}), allowed 0.02",
    ]
    assert result.details["champion"]["version"] == "1"
    assert result.details["champion"]["metrics"]["accuracy"] == m["champion_accuracy"]


def test_challenger_better_than_the_champion_passes_the_degradation_check(store):
    result = evaluate.run(
        store.spec("churn", "1", champion="2", max_degradation={"accuracy": 0.0, "roc_auc": 0.0}),
        log=lambda _: None,
    )

    assert result.details["decision"] == "promote"
    assert all("above champion v2" in reason for reason in result.details["reasons"])


def test_regression_model_is_scored_with_rmse_mae_and_r2(store):
    from sklearn.metrics import mean_absolute_error, r2_score

    spec = store.spec(
        "charges", "1", inputs=store.charges_holdout, label_column="total_charges",
        max_metrics={"rmse": 2000.0}, min_metrics={"r2": 0.99},
    )  # fmt: skip

    result = evaluate.run(spec, log=lambda _: None)

    holdout = make_customers(2000, seed=12)
    predicted = model_predictions(store, "charges", "1", holdout[REGRESSION_FEATURES])
    truth = holdout["total_charges"]
    metrics = result.details["challenger"]["metrics"]
    assert result.details["task_type"] == "regression"
    assert set(metrics) == {"rmse", "mae", "r2", "latency_ms_per_1k_rows"}
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((truth - predicted) ** 2))))
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted))
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted))
    assert result.details["decision"] == "reject"
    assert result.details["reasons"][0] == f"r2 {evaluate._fmt(metrics['r2'])} < minimum 0.99"


def test_holdout_without_the_label_column_is_a_one_line_error_and_logs_nothing(store):
    run_id = store.new_run()
    with pytest.raises(JobInputError) as caught:
        evaluate.run(store.spec("churn", "1", label_column="is_churn", run_id=run_id), log=lambda _: None)

    message = str(caught.value)
    assert message.startswith(
        f"holdout {store.churn_holdout} has no label column 'is_churn' (columns: customer_id,"
    )
    assert message.endswith("set label_column to the column holding the true label") and "\n" not in message
    assert store.client().list_artifacts(run_id) == []


def test_float_label_with_two_values_needs_an_explicit_task_type(store, tmp_path):
    frame = make_customers(500, seed=13)
    frame["churned"] = frame["churned"].astype("float64")
    path = tmp_path / "float-label.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)

    with pytest.raises(JobInputError) as caught:
        evaluate.run(store.spec("churn", "1", inputs=str(path)), log=lambda _: None)
    assert str(caught.value) == (
        "cannot infer task type from label column 'churned' (double, 2 distinct values): "
        "set task_type to 'classification' or 'regression'"
    )

    result = evaluate.run(store.spec("churn", "1", inputs=str(path), task_type="classification"), log=print)
    assert result.details["task_type"] == "classification" and result.metrics["challenger_accuracy"] > 0.7


def test_holdout_missing_a_model_feature_is_named(store, tmp_path):
    frame = make_customers(200, seed=14).drop(columns=["age"])
    path = tmp_path / "no-age.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)

    with pytest.raises(JobInputError) as caught:
        evaluate.run(store.spec("churn", "1", inputs=str(path)), log=lambda _: None)
    assert str(caught.value) == f"input {path} does not match the model signature: missing column(s) 'age'"


def test_threshold_on_a_metric_the_task_type_does_not_compute_is_named(store):
    with pytest.raises(JobInputError) as caught:
        evaluate.run(store.spec("churn", "1", min_metrics={"r2": 0.5}), log=lambda _: None)
    assert str(caught.value) == (
        "min_metrics names metric(s) 'r2' that a classification evaluation does not compute: "
        "use accuracy, f1, roc_auc, log_loss, latency_ms_per_1k_rows"
    )
