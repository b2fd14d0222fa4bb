"""Fixtures for the runtime tests: a SQLite MLflow registry with small scikit-learn models trained on
synthetic data, and helpers that write inputs and build job specs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_ai_provider.runtime.contract.errors import JobError, JobInputError
from airflow_ai_provider.runtime.contract.spec import JobSpec

FEATURES = ["age", "income", "visits"]
PIP = ["scikit-learn", "pandas", "numpy"]
HGB_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def customers(rows: int, seed: int = 0, start_id: int = 0) -> pd.DataFrame:
    """Synthetic customers: an id, two float features and an integer one."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(start_id, start_id + rows, dtype=np.int64),
            "age": rng.uniform(18, 80, rows),
            "income": rng.normal(50, 15, rows),
            "visits": rng.integers(0, 20, rows, dtype=np.int64),
        }
    )


def refused(module: Any, spec: JobSpec, *, max_length: int = 800) -> str:
    """Run ``module.run(spec)``; it must raise a one-line, non-retryable :class:`JobInputError`."""
    with pytest.raises(JobError) as caught:
        module.run(spec, log=lambda _: None)
    err = caught.value
    assert type(err) is JobInputError and not err.retryable, f"{type(err).__name__}: {err}"
    message = str(err)
    assert "\n" not in message and len(message) < max_length, message
    return message


def write_parquet(path: Path, frame: pd.DataFrame, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def read_output(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("part-*.parquet"))
    return (
        pd.concat([pd.read_parquet(file) for file in files], ignore_index=True) if files else pd.DataFrame()
    )


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Registry:
    """The test registry: its tracking URI and the in-memory estimators behind each model name."""

    tracking_uri: str
    estimators: dict[str, Any] = field(default_factory=dict)

    def spec(self, model: str, inputs: list[str] | str, output: Path | str, **kwargs: Any) -> JobSpec:
        raw: dict[str, Any] = {
            "job": "infer",
            "model": {"name": model, "version": kwargs.pop("version", "1")},
            "inputs": inputs if isinstance(inputs, list) else [inputs],
            "output": str(output),
            "mlflow": {"tracking_uri": kwargs.pop("tracking_uri", self.tracking_uri)},
            "params": {"id_columns": ["customer_id"], **kwargs.pop("params", {})},
        }
        if "shard" in kwargs:
            raw["shard"] = kwargs.pop("shard")
        assert not kwargs, kwargs
        return JobSpec.from_dict(raw)


def _train(registry: Registry) -> None:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from tests._support.churn_sample import mlflow_uris

    train = customers(2000, seed=42)
    features = train[FEATURES]
    label = np.where(train["age"] + train["visits"] * 2 > 60, "churn", "stay")
    signature = infer_signature(features.head(20), label[:20])

    churn = LogisticRegression(max_iter=500).fit(features, label)
    spend = LinearRegression().fit(features, train["income"] * 3 + train["visits"])
    nosig = LogisticRegression(max_iter=500).fit(features.to_numpy(), label)
    hgb = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(features, label)

    with mlflow_uris(registry.tracking_uri):  # the session's later tests must not inherit it
        artifacts = Path(registry.tracking_uri[len("sqlite:///") :]).parent / "artifacts"
        experiment = mlflow.create_experiment("runtime-tests", artifact_location=artifacts.as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(
                churn, name="churn", signature=signature, pip_requirements=PIP, registered_model_name="churn"
            )
            mlflow.sklearn.log_model(
                churn,
                name="churn-pickle",
                signature=signature,
                pip_requirements=PIP,
                registered_model_name="churn-pickle",
                serialization_format="cloudpickle",
            )
            mlflow.sklearn.log_model(
                spend, name="spend", signature=infer_signature(features.head(20)), pip_requirements=PIP,
                registered_model_name="spend",
            )  # fmt: skip
            mlflow.sklearn.log_model(nosig, name="nosig", pip_requirements=PIP, registered_model_name="nosig")
            mlflow.sklearn.log_model(
                hgb,
                name="hgb",
                signature=signature,
                pip_requirements=PIP,
                registered_model_name="hgb",
                skops_trusted_types=HGB_TRUSTED,
            )
            _log_without_trusted_types(
                hgb, signature, Path(registry.tracking_uri[len("sqlite:///") :]).parent
            )
    registry.estimators.update(churn=churn, **{"churn-pickle": churn}, spend=spend, nosig=nosig, hgb=hgb)
    registry.estimators["hgb-untrusted"] = hgb


def _log_without_trusted_types(model: Any, signature: Any, workdir: Path) -> None:
    """Register a skops-saved HistGradientBoosting model whose MLmodel lists no trusted types, as an
    older client would have."""
    import mlflow
    import yaml

    local = workdir / "hgb-untrusted"
    mlflow.sklearn.save_model(
        model, local, signature=signature, pip_requirements=PIP, skops_trusted_types=HGB_TRUSTED
    )
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    del mlmodel["flavors"]["sklearn"]["skops_trusted_types"]
    (local / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    mlflow.log_artifacts(str(local), "hgb-untrusted")
    mlflow.register_model(f"runs:/{mlflow.active_run().info.run_id}/hgb-untrusted", "hgb-untrusted")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Models registered once per session, each at version 1:

    - ``churn``: LogisticRegression with string classes and a column signature (skops format);
    - ``churn-pickle``: the same estimator saved with cloudpickle;
    - ``spend``: LinearRegression (no ``predict_proba``);
    - ``nosig``: LogisticRegression fitted on a bare array, logged without a signature;
    - ``hgb``: HistGradientBoostingClassifier saved with skops and its trusted types;
    - ``hgb-untrusted``: the same, but its MLmodel does not list the trusted types.
    """
    root = tmp_path_factory.mktemp("registry")
    registry = Registry(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    _train(registry)
    return registry


@pytest.fixture(scope="module", autouse=True)
def _restore_mlflow_env_per_module() -> Iterator[None]:
    """Module fixtures that run a job in-process (``configure_mlflow``) set MLflow's URIs, which also
    writes ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` into the environment before the per-test
    reset saves it: put both back when the module ends, so later modules and integration tests in
    the same session see their own stores."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def log_lines() -> list[str]:
    return []
