"""Loading a pinned model version from the MLflow registry, checking inputs against its signature, and
turning record batches into prediction columns.

The runtime only reads the registry: tracking and registry URIs come from the job spec, credentials
(``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``) from the environment, where
MLflow reads them itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from airflow_ai_provider.runtime import tracking
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import (
    JobInputError,
    JobServiceError,
    ModelLoadError,
    brief,
    one_line,
)
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.scratch import storage_full


#: MLflow settings for the runtime process besides the HTTP bounds: no progress bars in the task log.
@dataclass
class LoadedModel:
    """A pyfunc model with what the result reports about it."""

    pyfunc: Any
    info: dict[str, Any]
    flavors: dict[str, Any] = field(default_factory=dict)

    def input_schema(self) -> Any:
        return self.pyfunc.metadata.get_input_schema()


def load_model(
    ref: ModelReference, mlflow_ref: MlflowRef, scratch_dir: str, trusted_types: list[str]
) -> LoadedModel:
    """Load ``models:/<name>/<version>`` as a pyfunc model, with one-line errors for what can go wrong.

    The version is looked up first so that an unknown model or version is named as such. The model is
    downloaded into ``scratch_dir`` (a full disk there is a one-line :class:`~.scratch.StorageFullError`
    naming it); ``trusted_types`` are added to the skops trusted types of a
    scikit-learn model saved with skops (needed when its ``MLmodel`` lacks them).
    """
    import mlflow

    if not str(ref.version).isdigit():
        raise JobInputError(
            f"model version must be a registry version number, got {ref.version!r} for model {ref.name!r}"
        )
    tracking.probe_servers(mlflow_ref)
    tracking.configure_mlflow(mlflow_ref)
    version = _get_version(ref, mlflow_ref)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=ref.uri,
            dst_path=scratch_dir,
            tracking_uri=mlflow_ref.tracking_uri,
            registry_uri=mlflow_ref.registry_uri or mlflow_ref.tracking_uri,
        )
    except Exception as err:  # storage and HTTP errors of every artifact store
        full = storage_full(
            err,
            f"the download of model {ref.name!r} version {ref.version} to {scratch_dir}",
            "free space there or set scratch_dir to a folder with room",
        )
        raise full or tracking.mlflow_error(
            err, f"cannot download model {ref.name!r} version {ref.version}", mlflow_ref.tracking_uri
        ) from None
    flavors = _trust_types(local, trusted_types, ref)
    try:
        pyfunc = mlflow.pyfunc.load_model(local)
    except ImportError as err:
        raise ModelLoadError(
            f"model {ref.name!r} version {ref.version} needs a package missing from the runtime: {one_line(err)}"
        ) from None
    except Exception as err:  # flavor loaders raise anything
        untrusted = _untrusted_types_message(err)
        if untrusted:
            raise ModelLoadError(
                f"model {ref.name!r} version {ref.version} is saved with skops and {untrusted}: if you trust "
                "them, list them in skops_trusted_types"
            ) from None
        raise ModelLoadError(
            f"cannot load model {ref.name!r} version {ref.version}: {one_line(err)}"
        ) from None
    info = {
        "name": ref.name,
        "version": str(ref.version),
        "alias": ref.alias,
        "uri": ref.uri,
        "run_id": getattr(version, "run_id", None) or pyfunc.metadata.run_id,
    }
    return LoadedModel(pyfunc, info, flavors)


def _get_version(ref: ModelReference, mlflow_ref: MlflowRef) -> Any:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=mlflow_ref.tracking_uri, registry_uri=mlflow_ref.registry_uri)
    try:
        return client.get_model_version(ref.name, str(ref.version))
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise tracking.mlflow_error(
                err, f"cannot look up model {ref.name!r}", mlflow_ref.tracking_uri
            ) from None
    except Exception as err:  # transport errors
        raise tracking.mlflow_error(
            err, f"cannot look up model {ref.name!r}", mlflow_ref.tracking_uri
        ) from None
    registry = mlflow_ref.registry_uri or mlflow_ref.tracking_uri
    try:
        client.get_registered_model(ref.name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise JobInputError(f"registered model {ref.name!r} does not exist in {registry}") from None
        raise tracking.mlflow_error(
            err, f"cannot look up model {ref.name!r}", mlflow_ref.tracking_uri
        ) from None
    raise JobInputError(f"model {ref.name!r} has no version {ref.version} in {registry}")


def _trust_types(local_path: str, trusted_types: list[str], ref: ModelReference) -> dict[str, Any]:
    """Add ``trusted_types`` to a skops-saved scikit-learn model's flavor config; return the flavors."""
    from mlflow.models import Model

    mlmodel_path = os.path.join(local_path, "MLmodel")
    try:
        model = Model.load(mlmodel_path)
    except Exception as err:  # missing or broken MLmodel
        raise JobInputError(
            f"model {ref.name!r} version {ref.version} has no valid MLmodel in its artifacts: {one_line(err)}"
        ) from None
    sklearn = model.flavors.get("sklearn")
    if trusted_types and sklearn and sklearn.get("serialization_format") == "skops":
        sklearn["skops_trusted_types"] = sorted({*(sklearn.get("skops_trusted_types") or []), *trusted_types})
        model.save(mlmodel_path)
    return dict(model.flavors)


def _untrusted_types_message(err: BaseException) -> str | None:
    seen: BaseException | None = err
    while seen is not None:
        if type(seen).__name__ == "UntrustedTypesFoundException":
            return (
                str(seen)
                .strip()
                .splitlines()[0]
                .rstrip(".")
                .replace("Untrusted types found", "references untrusted types")
            )
        seen = seen.__cause__ or seen.__context__
    return None


# --- input columns against the signature -----------------------------------------------------------

_INTS_SMALL = {pa.int8(), pa.int16(), pa.uint8(), pa.uint16()}
_INTS = _INTS_SMALL | {pa.int32(), pa.int64(), pa.uint32(), pa.uint64()}
_FLOATS = {pa.float16(), pa.float32(), pa.float64()}
_STRINGS = {pa.string(), pa.large_string()}
_BINARY = {pa.binary(), pa.large_binary()}
#: For each MLflow column type: the Arrow types accepted (safe conversions only) and the type to cast to.
ACCEPTED: dict[str, tuple[set[pa.DataType], pa.DataType | None]] = {
    "double": (_FLOATS | _INTS, pa.float64()),
    "float": ({pa.float16(), pa.float32()} | _INTS_SMALL, pa.float32()),
    "long": (_INTS - {pa.uint64()}, pa.int64()),
    "integer": (_INTS_SMALL | {pa.int32()}, pa.int32()),
    "boolean": ({pa.bool_()}, None),
    "string": (_STRINGS, None),
    "binary": (_BINARY, None),
}
_NAMES = {
    pa.float64(): "double",
    pa.float32(): "float",
    pa.int64(): "long",
    pa.int32(): "integer",
    pa.bool_(): "boolean",
    pa.string(): "string",
    pa.large_string(): "string",
}


@dataclass(frozen=True)
class Features:
    """The columns fed to the model, in order, and the Arrow types they are read as (where the
    signature fixes one)."""

    names: list[str]
    types: dict[str, pa.DataType]


def type_name(kind: pa.DataType) -> str:
    return _NAMES.get(kind, str(kind))


def check_columns(
    schema: pa.Schema,
    signature: Any,
    id_columns: list[str],
    extra_columns: str,
    where: str,
) -> Features:
    """Check one input file's schema against the model's input signature.

    Raises one :class:`JobInputError` naming every missing column, every extra column the model does
    not use (unless ``extra_columns == "ignore"``) and every type mismatch. Safe numeric widening
    (e.g. integer to double) is allowed: columns are cast to the signature's type while reading. Without a column signature, all
    non-id columns are fed to the model.
    """
    present = set(schema.names)
    missing_ids = [name for name in id_columns if name not in present]
    if missing_ids:
        message = f"id column(s) {_quote(missing_ids)} of id_columns not in input {where}"
        raise JobInputError(with_look_alikes(message, missing_ids, schema.names))
    if signature is None or signature.is_tensor_spec() or not signature.has_input_names():
        return Features([name for name in schema.names if name not in id_columns], {})
    specs = signature.inputs
    wanted = {spec.name for spec in specs}
    missing = [spec.name for spec in specs if spec.required and spec.name not in present]
    extra = [name for name in schema.names if name not in wanted and name not in id_columns]
    problems = []
    if missing:
        problems.append(with_look_alikes(f"missing column(s) {_quote(missing)}", missing, schema.names))
    if extra and extra_columns != "ignore":
        problems.append(
            f"extra column(s) {_quote(extra)} not used by the model (list them in id_columns to "
            "keep them, or set extra_columns='ignore')"
        )
    types: dict[str, pa.DataType] = {}
    for spec in specs:
        if spec.name not in present:
            continue
        actual = schema.field(spec.name).type
        expected = getattr(spec.type, "name", None)
        accepted, target = ACCEPTED.get(expected, (None, None))
        if accepted is None:
            continue  # datetime, arrays, objects: left to the model's own checks
        if actual not in accepted and actual != pa.null():  # an all-null column casts to anything
            problems.append(f"column {spec.name!r} is {type_name(actual)}, model expects {expected}")
        elif target is not None:
            types[spec.name] = target
    if problems:
        raise JobInputError(f"input {where} does not match the model signature: {'; '.join(problems)}")
    return Features([spec.name for spec in specs if spec.name in present], types)


def _quote(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


# --- prediction ------------------------------------------------------------------------------------

Columns = list[tuple[str, pa.Array]]
NUMERIC = _INTS | _FLOATS | {pa.bool_()}


class ProbaPredictor:
    """Calls a scikit-learn classifier's ``predict_proba`` once per batch.

    ``prediction`` is ``classes_[argmax]``, ``confidence`` the highest probability, and one
    ``proba_<class>`` column per class. The features go in as one float64 matrix, wrapped in a
    DataFrame (no copy) when the estimator was fitted with column names.
    """

    def __init__(self, estimator: Any, features: list[str]) -> None:
        import numpy as np

        self.estimator = estimator
        fitted = getattr(estimator, "feature_names_in_", None)
        self.order = [str(name) for name in fitted] if fitted is not None else list(features)
        self.named = fitted is not None
        self.classes = np.asarray(estimator.classes_)
        self.proba_names = [f"proba_{label}" for label in self.classes]

    @classmethod
    def applies(cls, model: LoadedModel, features: list[str], schema: pa.Schema) -> bool:
        """Whether the fast path fits: a scikit-learn classifier on numeric columns only."""
        if "sklearn" not in model.flavors:
            return False
        try:
            estimator = model.pyfunc.get_raw_model()
        except Exception:  # flavors without a raw model
            return False
        classes = getattr(estimator, "classes_", None)
        if not hasattr(estimator, "predict_proba") or classes is None or getattr(classes, "ndim", 0) != 1:
            return False
        fitted = getattr(estimator, "feature_names_in_", None)
        order = [str(name) for name in fitted] if fitted is not None else features
        if fitted is not None and sorted(order) != sorted(features):
            return False
        return all(name in schema.names and schema.field(name).type in NUMERIC for name in order)

    def predict(self, batch: pa.RecordBatch) -> Columns:
        import numpy as np
        import pandas as pd

        matrix = np.empty((batch.num_rows, len(self.order)), dtype=np.float64)
        for position, name in enumerate(self.order):
            matrix[:, position] = batch.column(name).to_numpy(zero_copy_only=False)
        features = pd.DataFrame(matrix, columns=self.order, copy=False) if self.named else matrix
        proba = self.estimator.predict_proba(features)
        best = proba.argmax(axis=1)
        columns: Columns = [
            ("prediction", pa.array(self.classes[best])),
            ("confidence", pa.array(proba[np.arange(len(best)), best])),
        ]
        by_class = np.ascontiguousarray(proba.T)
        columns.extend((name, pa.array(by_class[i])) for i, name in enumerate(self.proba_names))
        return columns


class PyfuncPredictor:
    """Calls the pyfunc model's ``predict`` on a pandas DataFrame of the feature columns."""

    def __init__(self, pyfunc: Any, features: list[str]) -> None:
        self.pyfunc = pyfunc
        self.features = features

    def predict(self, batch: pa.RecordBatch) -> Columns:
        frame = batch.select(self.features).to_pandas()
        output = self.pyfunc.predict(frame)
        return prediction_columns(output, batch.num_rows)


def prediction_columns(output: Any, rows: int) -> Columns:
    """Name a pyfunc output: a vector becomes ``prediction``; a table's columns ``prediction_<name>``
    (or ``prediction`` when it has one column)."""
    import numpy as np
    import pandas as pd

    received = _describe_output(output)
    try:
        if isinstance(output, dict):
            output = pd.DataFrame(output)
        if isinstance(output, np.ndarray) and output.ndim == 2:
            output = pd.DataFrame(output)
        if isinstance(output, pd.DataFrame):
            if output.shape[1] == 1:
                columns = [("prediction", output.iloc[:, 0])]
            else:
                if output.columns.duplicated().any():
                    raise ValueError("its columns repeat a name")
                columns = [(f"prediction_{name}", output[name]) for name in output.columns]
        else:
            columns = [("prediction", output)]
        arrays = [
            (name, pa.array(np.asarray(values) if not isinstance(values, pd.Series) else values))
            for name, values in columns
        ]
    except (ValueError, TypeError, pa.ArrowException) as err:
        raise JobInputError(
            f"model returned {received}, which cannot be stored as prediction columns ({brief(err)}): "
            "the model must return one value per row, as a vector or a table with one row per input row"
        ) from None
    if any(len(array) != rows for _, array in arrays):
        raise JobInputError(
            f"model returned {len(arrays[0][1])} predictions ({received}) for {rows} rows: the model must "
            "return one prediction per input row"
        )
    return arrays


def _describe_output(output: Any) -> str:
    shape = getattr(output, "shape", None)
    kind = f"{type(output).__module__}.{type(output).__qualname__}".removeprefix("builtins.")
    return f"a {kind} of shape {tuple(shape)}" if shape is not None else f"a {kind}"


def prediction_failure(
    err: Exception, model: LoadedModel, batch: pa.RecordBatch, features: list[str]
) -> Exception:
    """A model's own failure to predict a batch, as one line naming the model and, when some feature
    columns of the batch have missing values, those columns (the usual cause)."""
    if isinstance(err, (JobInputError, JobServiceError, MemoryError)):
        return err
    from airflow_ai_provider.runtime.storage import missing_values

    with_missing = []
    for name in features:
        missing = missing_values(batch.column(name))
        if missing:
            with_missing.append(f"{name!r} ({missing} of {batch.num_rows} rows)")
    hint = (
        f"; feature column(s) with missing values: {', '.join(with_missing)}: fill or drop those rows, "
        "or use a model that accepts missing values"
        if with_missing
        else ": check that the input matches what the model was trained on"
    )
    info = model.info
    return JobInputError(
        f"model {info.get('name')!r} version {info.get('version')} failed to predict: "
        f"{type(err).__name__}: {brief(err)}{hint}"
    )


def make_predictor(model: LoadedModel, features: list[str], schema: pa.Schema, use_proba: bool) -> Any:
    """The fast ``predict_proba`` path when it applies, else the pyfunc's own ``predict``."""
    if use_proba and ProbaPredictor.applies(model, features, schema):
        return ProbaPredictor(model.pyfunc.get_raw_model(), features)
    return PyfuncPredictor(model.pyfunc, features)
