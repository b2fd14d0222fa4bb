"""The job spec (what to run) and the job result (what happened), as versioned JSON.

Both travel between the control plane (the Airflow operator) and the execution plane (this
runtime). The spec never carries secrets: MLflow and S3 credentials reach the runtime through its
environment only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.params import reject_unknown_params, shard

__all__ = ["JobResult", "JobSpec", "MlflowRef", "OutputFile", "Shard", "reject_unknown_params"]

SPEC_VERSION = 1
RESULT_VERSION = 1
JOB_TYPES = ("infer", "train", "validate", "evaluate", "drift")
# Spec fields each job cannot do without (beyond job, inputs and mlflow).
REQUIRED_BY_JOB = {
    "infer": ("model", "output"),
    "train": ("params",),
    "validate": ("params",),
    "evaluate": ("model",),
    "drift": ("model",),
}


@dataclass(frozen=True)
class MlflowRef:
    """Where the job's MLflow records go. Credentials come from the environment."""

    tracking_uri: str
    registry_uri: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tracking_uri, str) or not self.tracking_uri:
            raise JobInputError(
                f"job spec field 'mlflow.tracking_uri' must be a URI, got {self.tracking_uri!r}"
            )
        for name in ("registry_uri", "run_id", "experiment_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise JobInputError(f"job spec field 'mlflow.{name}' must be a string, got {value!r}")


@dataclass(frozen=True)
class Shard:
    """This job's slice of the input: ``index`` out of ``count`` disjoint shards."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        index, count = shard(self.index, self.count)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "count", count)


@dataclass(frozen=True)
class JobSpec:
    """One job: a model, inputs, an output location and parameters.

    :param job: job type, one of :data:`JOB_TYPES`.
    :param model: the pinned model version to use (the challenger for ``evaluate``).
    :param inputs: input URIs (``file://``, ``s3://`` or plain paths): files, folders or globs.
    :param output: output URI prefix (a folder); each shard writes its own part file in it.
    :param params: job parameters (for ``infer``: ``id_columns``, ``batch_size``, ``input_format``).
    :param mlflow: tracking server and the MLflow run booked for this task.
    :param shard: which slice of the input this job handles.
    :param baseline_model: the model to compare with (the current champion for ``evaluate``).
    """

    job: str
    inputs: list[str]
    mlflow: MlflowRef
    model: ModelReference | None = None
    output: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    shard: Shard = field(default_factory=Shard)
    baseline_model: ModelReference | None = None
    version: int = SPEC_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise JobInputError(f"job spec is not valid JSON: {err}") from None
        if not isinstance(raw, dict):
            raise JobInputError("job spec must be a JSON object")
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobSpec:
        version = raw.get("version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise JobInputError(
                f"job spec version {version!r} is not supported by this runtime "
                f"(supports {SPEC_VERSION}): use a runtime image that matches the provider"
            )
        if raw.get("job") not in JOB_TYPES:
            raise JobInputError(
                f"unknown job type {raw.get('job')!r}: expected one of {', '.join(JOB_TYPES)}"
            )
        required = ("inputs", "mlflow", *REQUIRED_BY_JOB[raw["job"]])
        missing = [name for name in required if not raw.get(name)]
        if missing:
            raise JobInputError(f"{raw['job']} job spec is missing field(s): {', '.join(missing)}")
        inputs = raw["inputs"]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not inputs or not all(isinstance(uri, str) and uri for uri in inputs):
            raise JobInputError("job spec field 'inputs' must be a non-empty list of URIs")
        if raw.get("output") is not None and not isinstance(raw["output"], str):
            raise JobInputError("job spec field 'output' must be a URI")
        return cls(
            job=raw["job"],
            model=_pinned_model(raw.get("model"), "model"),
            baseline_model=_pinned_model(raw.get("baseline_model"), "baseline_model"),
            inputs=list(inputs),
            output=raw.get("output"),
            mlflow=_build(MlflowRef, raw["mlflow"], "mlflow"),
            params=_params(raw.get("params")),
            shard=_build(Shard, raw.get("shard") or {}, "shard"),
            version=version,
        )


@dataclass
class OutputFile:
    """One file the job wrote, with its checksum."""

    uri: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class JobResult:
    """What the runtime writes when it ends, successful or not.

    ``error`` is a one-line message a user can act on; ``retryable`` tells the operator whether a
    retry can help (an unreachable server) or not (bad input).

    For data lineage, ``input_source`` holds the spec's input URIs (comma-separated), ``input_digest``
    a stable digest of the data this job read and ``input_schema`` its columns (name to Arrow type).
    ``details`` holds what is particular to a job type (a registered version, a decision, a report).
    """

    job: str
    status: str
    model: dict[str, Any] = field(default_factory=dict)
    rows_in: int = 0
    rows_out: int = 0
    outputs: list[OutputFile] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    shard: dict[str, int] = field(default_factory=dict)
    input_source: str | None = None
    input_digest: str | None = None
    input_schema: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False
    version: int = RESULT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _params(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise JobInputError(f"job spec field 'params' must be an object, got {type(raw).__name__}")
    return dict(raw)


def _pinned_model(raw: Any, where: str) -> ModelReference | None:
    """The spec's model field as a pinned reference: the runtime never resolves an alias itself."""
    if not raw:
        return None
    model = _build(ModelReference, raw, where)
    if not model.pinned:
        raise JobInputError(f"job spec field {where!r} needs a pinned version: got {model.uri}")
    return model


def _build(kind: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise JobInputError(f"job spec field {where!r} must be an object")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise JobInputError(f"job spec field {where!r} has unknown key(s): {', '.join(unknown)}")
    try:
        return kind(**raw)
    except TypeError as err:
        raise JobInputError(f"job spec field {where!r} is incomplete: {err}") from None
