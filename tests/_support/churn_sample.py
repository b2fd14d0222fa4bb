"""Sample use case for the DAG templates: synthetic customer churn data and a small churn model.

Nothing here downloads data or models: customers are drawn from a seeded generator, and the label
comes from a known logistic model of the features plus noise, so a gradient-boosted classifier
reaches roughly 0.8 accuracy.

Use it from Python (``from tests._support import churn_sample``) or, from the repository root, as
a script::

    python -m tests._support.churn_sample write /tmp/data/customers --rows 100000 --files 4
    python -m tests._support.churn_sample write s3://bucket/customers --rows 100000 --fmt csv
    python -m tests._support.churn_sample train --tracking-uri http://127.0.0.1:5000

For ``s3://`` targets the endpoint comes from ``storage_options["endpoint_url"]``, else from the
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` environment variables; credentials follow the
usual boto3 chain unless ``storage_options`` names them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FEATURES: tuple[str, ...] = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "age",
    "num_products",
    "days_since_last_login",
    "contract_months",
)
LABEL = "churned"
ID_COLUMN = "customer_id"
EXPERIMENT_NAME = "churn-training"
ROW_GROUP_SIZE = 50_000
FORMATS = ("parquet", "csv")

# Logistic model behind the label: logit = INTERCEPT + sum(weight * (x - center) / scale) + noise.
# Centers and scales are the generator's population statistics, so a row's label does not depend
# on the other rows drawn with it.
_INTERCEPT = -1.1
_WEIGHTS: dict[str, tuple[float, float, float]] = {  # name: (weight, center, scale)
    "tenure_months": (-1.2, 36.5, 20.8),
    "monthly_charges": (0.9, 70.0, 25.0),
    "total_charges": (-0.2, 2555.0, 1900.0),
    "support_calls": (1.0, 1.5, 1.22),
    "age": (-0.25, 45.0, 14.0),
    "num_products": (-0.4, 1.8, 0.9),
    "days_since_last_login": (0.8, 15.0, 15.0),
    "contract_months": (-1.0, 8.9, 8.9),
}
_NOISE_SCALE = 0.5


# --------------------------------------------------------------------------- data


def _draw_features(rng: np.random.Generator, n_rows: int) -> dict[str, np.ndarray]:
    """Draw the raw feature columns, all float64."""
    import numpy as np

    tenure = rng.integers(1, 73, n_rows).astype("float64")
    monthly = np.clip(rng.normal(70.0, 25.0, n_rows), 18.0, 150.0).round(2)
    return {
        "tenure_months": tenure,
        "monthly_charges": monthly,
        "total_charges": (tenure * monthly * rng.uniform(0.9, 1.1, n_rows)).round(2),
        "support_calls": rng.poisson(1.5, n_rows).astype("float64"),
        "age": np.clip(rng.normal(45.0, 14.0, n_rows), 18.0, 90.0).round(),
        "num_products": (1 + rng.poisson(0.8, n_rows)).astype("float64"),
        "days_since_last_login": rng.exponential(15.0, n_rows).round(1),
        "contract_months": rng.choice([1.0, 12.0, 24.0], n_rows, p=[0.5, 0.3, 0.2]),
    }


def _churn_labels(rng: np.random.Generator, features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sample 0/1 labels from the logistic model of the standardized features."""
    import numpy as np

    n_rows = len(features["tenure_months"])
    logit = np.full(n_rows, _INTERCEPT)
    for name, (weight, center, scale) in _WEIGHTS.items():
        logit += weight * (features[name] - center) / scale
    logit += rng.normal(0.0, _NOISE_SCALE, n_rows)
    probability = 1.0 / (1.0 + np.exp(-logit))
    return (rng.uniform(size=n_rows) < probability).astype("int64")


def _customer_ids(start: int, n_rows: int) -> list[str]:
    """Ids ``C0000001``, ``C0000002``, ... starting at ``start``."""
    return [f"C{i:07d}" for i in range(start, start + n_rows)]


def make_customers(n_rows: int, seed: int = 0, *, with_label: bool = True) -> pd.DataFrame:
    """Generate synthetic customers.

    The same ``seed`` gives the same rows; ``with_label=False`` drops the label column without
    changing the features.

    :param n_rows: number of customers.
    :param seed: random seed.
    :param with_label: include the ``churned`` column (int64, 0/1).
    :return: ``customer_id`` (string), the :data:`FEATURES` (float64) and optionally ``churned``.
    """
    import numpy as np
    import pandas as pd

    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    rng = np.random.default_rng(seed)
    features = _draw_features(rng, n_rows)
    labels = _churn_labels(rng, features) if n_rows else np.zeros(0, dtype="int64")
    frame = pd.DataFrame({ID_COLUMN: _customer_ids(1, n_rows), **features})
    if with_label:
        frame[LABEL] = labels
    return frame


# --------------------------------------------------------------------------- writing


def _split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


def _s3_client(storage_options: Mapping[str, Any] | None) -> Any:
    """Build a boto3 S3 client from an allow-list of ``storage_options`` keys and the environment."""
    import boto3

    from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds

    options = dict(storage_options or {})
    client_kwargs = dict(options.get("client_kwargs") or {})
    endpoint = (
        options.get("endpoint_url")
        or client_kwargs.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        aws_access_key_id=options.get("key") or options.get("aws_access_key_id"),
        aws_secret_access_key=options.get("secret") or options.get("aws_secret_access_key"),
        aws_session_token=options.get("token") or options.get("aws_session_token"),
        region_name=options.get("region_name") or client_kwargs.get("region_name"),
        config=ServiceBounds.from_env().botocore_config(),  # a hung endpoint fails in bounded time
    )


def _encode(frame: pd.DataFrame, fmt: str, row_group_size: int) -> bytes:
    """Serialize one part as Parquet (several row groups) or CSV."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def _parts(frame: pd.DataFrame, n_files: int) -> Iterator[pd.DataFrame]:
    """Split ``frame`` into ``n_files`` contiguous parts of near-equal size."""
    n_rows = len(frame)
    for index in range(n_files):
        yield frame.iloc[index * n_rows // n_files : (index + 1) * n_rows // n_files]


def _local_dir(uri_or_path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Folder to write to, and the prefix that written locations get (``file://`` or none)."""
    text = os.fspath(uri_or_path)
    if text.startswith("file://"):
        return Path(text[len("file://") :]), "file://"
    return Path(text), ""


def write_customers(
    uri_or_path: str | os.PathLike[str],
    n_rows: int,
    seed: int = 0,
    *,
    n_files: int = 1,
    fmt: str = "parquet",
    with_label: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> list[str]:
    """Write synthetic customers as ``customers-00000.<fmt>``, ... into a folder or S3 prefix.

    The rows are those of :func:`make_customers` with the same seed, split into ``n_files``
    contiguous parts, so customer ids are unique across files.

    :param uri_or_path: local folder, ``file://`` folder or ``s3://bucket/prefix``.
    :param n_rows: total number of rows over all files.
    :param seed: random seed.
    :param n_files: number of files.
    :param fmt: ``"parquet"`` or ``"csv"``.
    :param with_label: include the ``churned`` column (a scoring input has none).
    :param storage_options: for S3: ``endpoint_url``, ``key``, ``secret``, ``token``,
        ``region_name`` or s3fs-style ``client_kwargs``; other keys are ignored.
    :param row_group_size: Parquet rows per row group.
    :return: written locations, in the form given (path, ``file://`` or ``s3://``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if n_files < 1:
        raise ValueError(f"n_files must be >= 1, got {n_files}")
    frame = make_customers(n_rows, seed, with_label=with_label)
    names = [f"customers-{index:05d}.{fmt}" for index in range(n_files)]
    payloads = (_encode(part, fmt, row_group_size) for part in _parts(frame, n_files))
    target = os.fspath(uri_or_path)
    if target.startswith("s3://"):
        return _write_s3(target, names, payloads, storage_options)
    return _write_local(target, names, payloads)


def _write_s3(uri: str, names: list[str], payloads: Iterator[bytes], storage_options: Any) -> list[str]:
    """Upload each payload under the S3 prefix; return the object URIs."""
    bucket, prefix = _split_s3_uri(uri)
    client = _s3_client(storage_options)
    written = []
    for name, payload in zip(names, payloads, strict=True):
        key = f"{prefix}/{name}" if prefix else name
        client.upload_fileobj(io.BytesIO(payload), bucket, key)
        written.append(f"s3://{bucket}/{key}")
    return written


def _write_local(target: str, names: list[str], payloads: Iterator[bytes]) -> list[str]:
    """Write each payload into the folder (atomically, via a temporary name); return locations."""
    folder, scheme = _local_dir(target)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in zip(names, payloads, strict=True):
        path = folder.resolve() / name
        partial = path.with_name(f".{name}.partial")
        partial.write_bytes(payload)
        partial.replace(path)
        written.append(f"{scheme}{path}")
    return written


# --------------------------------------------------------------------------- training


@contextlib.contextmanager
def mlflow_uris(tracking_uri: str, registry_uri: str | None = None) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs at the given stores, then restore them.

    Use it to load ``models:/...`` URIs from a given store without leaving global state behind::

        with mlflow_uris(tracking_uri):
            model = mlflow.pyfunc.load_model("models:/churn@champion")

    :param tracking_uri: tracking URI to use inside the block.
    :param registry_uri: registry URI to use inside the block; ``tracking_uri`` when ``None``.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` (and the registry setter
    ``MLFLOW_REGISTRY_URI``) into ``os.environ``; both module globals and both variables are put
    back exactly as they were. So are the active experiment and ``MLFLOW_EXPERIMENT_ID``, which
    ``mlflow.set_experiment`` inside the block writes: a module-scoped fixture's experiment must not
    follow later tests to another store.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env_names = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME",
    )
    saved_env = {name: os.environ.get(name) for name in env_names}
    saved_experiment = fluent._active_experiment_id
    saved_tracking = getattr(tracking_utils, "_tracking_uri", None)
    saved_registry = getattr(registry_utils, "_registry_uri", None)
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri or tracking_uri)
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        registry_utils._registry_uri = saved_registry
        fluent._active_experiment_id = saved_experiment
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, so MLflow does not infer them (~9 s)."""
    import cloudpickle
    import mlflow
    import numpy
    import pandas
    import sklearn

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
    ]


def _local_artifact_location(tracking_uri: str) -> str | None:
    """``file://`` folder next to a ``sqlite:///`` store, where its artifacts go.

    Without it, MLflow puts a SQL store's artifacts under ``./mlruns`` of the current directory.
    Other stores (an ``http://`` server) choose their own location: ``None``.
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri[len(prefix) :] in ("", ":memory:"):
        return None
    database = Path(tracking_uri[len(prefix) :].split("?", 1)[0])
    return (database.resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    """Id of the experiment called ``name``, created (with ``artifact_location``) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def _fit(frame: pd.DataFrame, seed: int, max_iter: int) -> tuple[Any, pd.DataFrame, Any, dict[str, float]]:
    """Fit the classifier on 75 % of ``frame``; return it, the training X, y and holdout metrics."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    features, labels = frame[list(FEATURES)], frame[LABEL]
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=seed, stratify=labels
    )
    model = HistGradientBoostingClassifier(max_iter=max_iter, early_stopping=False, random_state=seed)
    model.fit(x_train, y_train)
    metrics = {
        "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
        "roc_auc": float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])),
    }
    return model, x_train, y_train, metrics


def train_and_register(
    tracking_uri: str,
    model_name: str = "churn",
    *,
    alias: str | None = "champion",
    n_rows: int = 20_000,
    seed: int = 0,
    registry_uri: str | None = None,
    experiment_name: str = EXPERIMENT_NAME,
    artifact_location: str | None = None,
    max_iter: int = 50,
) -> dict[str, Any]:
    """Train a small churn classifier, log it to MLflow and register a new model version.

    The model is a ``HistGradientBoostingClassifier`` saved with cloudpickle (loading it needs no
    skops trusted-type list), with a signature, an input example and pinned pip requirements.
    MLflow's global tracking/registry URIs are restored on return.

    :param tracking_uri: MLflow tracking URI (``http://...``, ``sqlite:///...``).
    :param model_name: registered model name.
    :param alias: alias pointed at the new version; ``None`` sets none.
    :param n_rows: synthetic customers to train and evaluate on.
    :param seed: seed for the data, the split and the model.
    :param registry_uri: model registry URI; the tracking URI when ``None``.
    :param experiment_name: experiment of the training run, created if missing.
    :param artifact_location: artifact root for a new experiment; by default a ``mlartifacts``
        folder next to a ``sqlite:///`` store, and the server's choice for ``http://`` stores.
    :param max_iter: boosting iterations.
    :return: ``{"name", "version", "run_id", "metrics", "model_uri"}``; ``version`` is an int and
        ``model_uri`` is ``models:/<name>/<version>``.
    """
    import mlflow
    from mlflow.models import infer_signature

    registry_uri = registry_uri or tracking_uri
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    model, x_train, _, metrics = _fit(make_customers(n_rows, seed), seed, max_iter)
    with mlflow_uris(tracking_uri, registry_uri):
        location = artifact_location or _local_artifact_location(tracking_uri)
        with mlflow.start_run(experiment_id=_experiment_id(client, experiment_name, location)) as run:
            mlflow.log_params({"n_rows": n_rows, "seed": seed, "max_iter": max_iter})
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=model_name,
                signature=infer_signature(x_train, model.predict(x_train)),
                input_example=x_train.head(5),
                pip_requirements=_pip_requirements(),
                serialization_format="cloudpickle",
            )
    version = int(info.registered_model_version)
    if alias:
        client.set_registered_model_alias(model_name, alias, str(version))
    return {
        "name": model_name,
        "version": version,
        "run_id": run.info.run_id,
        "metrics": metrics,
        "model_uri": f"models:/{model_name}/{version}",
    }


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write synthetic customers")
    write.add_argument("target", help="folder, file:// or s3://bucket/prefix")
    write.add_argument("--rows", type=int, default=100_000)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--files", type=int, default=1)
    write.add_argument("--fmt", choices=FORMATS, default="parquet")
    write.add_argument("--with-label", action="store_true")
    train = commands.add_parser("train", help="train and register the churn model")
    train.add_argument("--tracking-uri", required=True)
    train.add_argument("--name", default="churn")
    train.add_argument("--alias", default="champion")
    train.add_argument("--rows", type=int, default=20_000)
    train.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the result as JSON."""
    args = _parser().parse_args(argv)
    if args.command == "write":
        result: Any = write_customers(
            args.target, args.rows, args.seed, n_files=args.files, fmt=args.fmt, with_label=args.with_label
        )
    else:
        result = train_and_register(
            args.tracking_uri, args.name, alias=args.alias or None, n_rows=args.rows, seed=args.seed
        )
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
