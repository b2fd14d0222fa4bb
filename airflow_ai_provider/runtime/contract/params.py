"""The parameters of each runtime job, checked by one light module that the operators import too.

Each job's parameters are a frozen dataclass built with ``from_spec(spec.params)``. The operators call
``check(values, partial=True)`` on their literal arguments when the DAG is parsed, and again after
templates render, so a wrong argument fails with the same one-line message wherever it is found.
Messages name each parameter as the operator argument of the same name (``batch_size``, not
``params.batch_size``). This module imports nothing heavy: no pyarrow, pandas or MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.param_checks import (
    MAX_INT,
    Check,
    alias_name,
    boolean,
    choice,
    column_list,
    function_reference,
    integer,
    mapping,
    model_name,
    number,
    output_names,
    positive_int,
    reject_unknown_params,
    shard,
    string_list,
    text,
    thresholds,
)

__all__ = [
    "MAX_INT",
    "DriftParams",
    "EvaluateParams",
    "InferParams",
    "JobParams",
    "TrainParams",
    "ValidateParams",
    "integer",
    "reject_unknown_params",
    "shard",
]

FORMATS = ("parquet", "csv")
MAX_TIMEOUT_S = 7 * 24 * 3600
RESERVED_OUTPUT = ("prediction", "confidence")
#: The output column holding each row's hash of its ``content_columns``.
CONTENT_HASH_COLUMN = "content_hash"
#: Element types of vector (fixed-size list) output columns.
VECTOR_TYPES = ("float32", "float64")
TASK_TYPES = ("classification", "regression")
METRICS = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss", "latency_ms_per_1k_rows"),
    "regression": ("rmse", "mae", "r2", "latency_ms_per_1k_rows"),
}
ALL_METRICS = tuple(dict.fromkeys(name for names in METRICS.values() for name in names))


# --- the jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobParams:
    """Base of the job parameter dataclasses: field checks from :meth:`checks`, then :meth:`cross_check`."""

    job: ClassVar[str] = ""
    required: ClassVar[dict[str, str]] = {}  # name -> what it is, for the message
    nullable: ClassVar[frozenset[str]] = frozenset()  # None is a value, not "use the default"
    also_known: ClassVar[tuple[str, ...]] = ()  # parameters another part of the job reads

    @classmethod
    def checks(cls) -> dict[str, Check]:
        raise NotImplementedError

    @classmethod
    def cross_check(cls, values: dict[str, Any]) -> None:
        """Checks between parameters; only those present in ``values`` are known."""

    @classmethod
    def check(cls, params: Any, *, partial: bool = False) -> dict[str, Any]:
        """The checked values of ``params``; ``partial`` allows required ones to be absent (templated)."""
        if not isinstance(params, Mapping):
            raise JobInputError(f"{cls.job} job spec field 'params' must be an object, got {params!r}")
        checks = cls.checks()
        reject_unknown_params(cls.job, params, {*checks, *cls.also_known})
        values: dict[str, Any] = {}
        for name, check in checks.items():
            if name not in params or (params[name] is None and name not in cls.nullable):
                continue
            values[name] = None if params[name] is None else check(params[name], name)
        if not partial:
            for name, what in cls.required.items():
                if name not in values:
                    raise JobInputError(f"{name} is required: {what}")
        cls.cross_check(values)
        return values

    @classmethod
    def from_spec(cls, params: Any) -> Any:
        return cls(**cls.check(params))


@dataclass(frozen=True)
class InferParams(JobParams):
    """The ``infer`` parameters."""

    id_columns: list[str] = field(default_factory=list)
    batch_size: int | None = None  # sized from the input's metadata and a memory budget
    input_format: str | None = None
    extra_columns: str = "error"
    predict_proba: bool = True
    skops_trusted_types: list[str] = field(default_factory=list)
    scratch_dir: str | None = None
    check_unique_ids: bool = False
    model_threads: int | None = None
    output_columns: list[str] | dict[str, str] | None = None  # the model's output names kept
    vector_type: str = "float32"
    batch_memory_mb: int | None = None  # default: BATCH_MEMORY_BYTES of the infer job
    content_columns: list[str] = field(default_factory=list)
    previous_output: str | None = None
    vector_index: str | None = None  # the vector column to index
    index_check_queries: int = 20

    job: ClassVar[str] = "infer"

    @classmethod
    def checks(cls) -> dict[str, Check]:
        return {
            "id_columns": column_list,
            "batch_size": positive_int(),
            "input_format": choice(*FORMATS),
            "extra_columns": choice("error", "ignore"),
            "predict_proba": boolean,
            "skops_trusted_types": string_list,
            "scratch_dir": text,
            "check_unique_ids": boolean,
            "model_threads": positive_int(1024),
            "output_columns": output_names,
            "vector_type": choice(*VECTOR_TYPES),
            "batch_memory_mb": positive_int(1 << 20),
            "content_columns": column_list,
            "previous_output": text,
            "vector_index": text,
            "index_check_queries": positive_int(10_000),
        }

    @classmethod
    def cross_check(cls, values: dict[str, Any]) -> None:
        ids = values.get("id_columns", [])
        clashes = [
            name for name in ids if name in RESERVED_OUTPUT or name.startswith(("proba_", "prediction_"))
        ]
        if clashes:
            raise JobInputError(
                f"id column(s) {', '.join(map(repr, clashes))} clash with prediction column names: "
                "rename them in the input or leave them out of id_columns"
            )
        if values.get("check_unique_ids") and "id_columns" in values and not ids:
            raise JobInputError("check_unique_ids needs id_columns: name the columns that identify a row")
        if values.get("previous_output") and "id_columns" in values and not ids:
            raise JobInputError(
                "previous_output needs id_columns: name the columns that identify a row, so that unchanged "
                "rows can be found in the previous output"
            )
        if values.get("previous_output") and "content_columns" in values and not values["content_columns"]:
            raise JobInputError(
                "previous_output needs content_columns: name the columns whose content decides whether a "
                "row changed"
            )
        clashing = [name for name in values.get("content_columns", []) if name in ids]
        if CONTENT_HASH_COLUMN in ids:
            clashing.append(CONTENT_HASH_COLUMN)
        if clashing:
            raise JobInputError(
                f"column(s) {', '.join(map(repr, clashing))} cannot be both id and content columns, and "
                f"{CONTENT_HASH_COLUMN!r} is the output's own column: list each column once"
            )


@dataclass(frozen=True)
class TrainParams(JobParams):
    """The ``train`` parameters."""

    training_function: str = ""
    label_column: str = ""
    model_name: str = ""
    alias: str = "challenger"
    feature_columns: list[str] | None = None
    id_columns: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    pip_requirements: list[str] | None = None
    training_key: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    dag_id: str | None = None
    dag_run_id: str | None = None
    task_id: str | None = None
    image: str | None = None
    input_format: str | None = None
    registration_timeout_s: int = 300

    job: ClassVar[str] = "train"
    required: ClassVar[dict[str, str]] = {
        "training_function": "'package.module:function'",
        "label_column": "the column holding the label",
        "model_name": "the registered model to add a version to",
    }

    @classmethod
    def checks(cls) -> dict[str, Check]:
        return {
            "training_function": function_reference,
            "label_column": text,
            "model_name": model_name,
            "alias": alias_name,
            "feature_columns": lambda value, name: column_list(value, name) or None,
            "id_columns": column_list,
            "hyperparameters": mapping,
            "pip_requirements": lambda value, name: string_list(value, name) or None,
            "training_key": text,
            "intended_use": text,
            "limitations": text,
            "dag_id": text,
            "dag_run_id": text,
            "task_id": text,
            "image": text,
            "input_format": choice(*FORMATS),
            "registration_timeout_s": positive_int(MAX_TIMEOUT_S),
        }

    @classmethod
    def cross_check(cls, values: dict[str, Any]) -> None:
        label = values.get("label_column")
        if label is not None and label in (values.get("feature_columns") or []):
            raise JobInputError(f"label column {label!r} is also listed in feature_columns: leave it out")


@dataclass(frozen=True)
class ValidateParams(JobParams):
    """The ``validate`` parameters besides the suite (read by :mod:`.expectations`)."""

    batch_size: int | None = None  # sized from the input's metadata and memory_budget_mb
    memory_budget_mb: int | None = None
    input_format: str | None = None
    report_uri: str | None = None
    max_examples: int = 5
    scratch_dir: str | None = None

    job: ClassVar[str] = "validate"
    also_known: ClassVar[tuple[str, ...]] = ("suite_uri", "expectations", "suite_name")

    @classmethod
    def checks(cls) -> dict[str, Check]:
        return {
            "batch_size": positive_int(),
            "memory_budget_mb": positive_int(1 << 20),
            "input_format": choice(*FORMATS),
            "report_uri": text,
            "max_examples": positive_int(10_000),
            "scratch_dir": text,
        }


@dataclass(frozen=True)
class EvaluateParams(JobParams):
    """The ``evaluate`` parameters."""

    label_column: str = ""
    task_type: str | None = None
    min_metrics: dict[str, float] = field(default_factory=dict)
    max_metrics: dict[str, float] = field(default_factory=dict)
    max_degradation: dict[str, float] = field(default_factory=dict)
    input_format: str | None = None
    skops_trusted_types: list[str] = field(default_factory=list)
    scratch_dir: str | None = None

    job: ClassVar[str] = "evaluate"
    required: ClassVar[dict[str, str]] = {"label_column": "the holdout column with the true label"}

    @classmethod
    def checks(cls) -> dict[str, Check]:
        return {
            "label_column": text,
            "task_type": choice(*TASK_TYPES),
            "min_metrics": thresholds(),
            "max_metrics": thresholds(),
            "max_degradation": thresholds(minimum=0),
            "input_format": choice(*FORMATS),
            "skops_trusted_types": string_list,
            "scratch_dir": text,
        }

    @classmethod
    def cross_check(cls, values: dict[str, Any]) -> None:
        task_type = values.get("task_type")
        for name in ("min_metrics", "max_metrics", "max_degradation"):
            check_metric_names(name, values.get(name) or {}, task_type)

    def check_metric_names(self, task_type: str) -> None:
        for name in ("min_metrics", "max_metrics", "max_degradation"):
            check_metric_names(name, getattr(self, name), task_type)


def check_metric_names(option: str, metrics: Mapping[str, Any], task_type: str | None) -> None:
    """Refuse a threshold on a metric the evaluation does not compute (for ``task_type`` when known)."""
    known = METRICS[task_type] if task_type else ALL_METRICS
    wrong = sorted(set(metrics) - set(known))
    if wrong:
        kind = f"a {task_type}" if task_type else "an"
        raise JobInputError(
            f"{option} names metric(s) {', '.join(map(repr, wrong))} that {kind} evaluation does not "
            f"compute: use {', '.join(known)}"
        )


def _pvalue(value: Any, name: str) -> float | None:
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None  # a template rendered None
    return number(value, name, above=0, below=1)


@dataclass(frozen=True)
class DriftParams(JobParams):
    """The ``drift`` parameters."""

    psi_threshold: float = 0.2
    ks_pvalue_threshold: float | None = 0.01
    min_drifted_features: int = 1
    features: list[str] | None = None
    sample_size: int = 5000
    seed: int = 0
    batch_size: int = 65_536
    input_format: str | None = None

    job: ClassVar[str] = "drift"
    nullable: ClassVar[frozenset[str]] = frozenset({"ks_pvalue_threshold"})

    @classmethod
    def checks(cls) -> dict[str, Check]:
        return {
            "psi_threshold": lambda value, name: number(value, name, above=0),
            "ks_pvalue_threshold": _pvalue,
            "min_drifted_features": positive_int(),
            "features": lambda value, name: column_list(value, name) or None,
            "sample_size": positive_int(10_000_000),
            "seed": lambda value, name: integer(value, name, minimum=0, maximum=2**32 - 1),
            "batch_size": positive_int(),
            "input_format": choice(*FORMATS),
        }

    @classmethod
    def cross_check(cls, values: dict[str, Any]) -> None:
        features, wanted = values.get("features"), values.get("min_drifted_features")
        if features and wanted is not None:
            check_min_drifted(wanted, features)


def check_min_drifted(wanted: int, features: list[str]) -> None:
    """``min_drifted_features`` cannot exceed the number of features checked."""
    if wanted > len(features):
        raise JobInputError(
            f"min_drifted_features {wanted} is more than the {len(features)} feature(s) checked "
            f"({', '.join(features)}): lower it or check more features"
        )
