"""The backward walk from predictions or a model version to the model version's own records.

The chain, newest first: predictions <- inference task <- model version <- training task <- training
data (URI and digest) <- data validation <- quality gate decision <- approval <- promotion, and the
Airflow DAG runs behind them. Everything is read from what the operators record (run and model
version tags, ``job_result.json`` artifacts); nothing is changed. A record that cannot be found
becomes a hop marked *not recorded*, saying what was searched. This module walks to the model
version; :mod:`.steps` walks on from it.

:func:`trace` takes an ``MlflowClient`` and a DAG-run state lookup (``(dag_id, run_id) -> state``),
so it runs the same against a tracking server, a SQLite store or a test's fixtures.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from airflow_ai_provider.lineage import steps
from airflow_ai_provider.lineage.airflow_runs import DagRunLookup
from airflow_ai_provider.lineage.records import DagRunId, dag_run_of, run_state, task_name, where
from airflow_ai_provider.lineage.render import DagRunRecord, Hop, Lineage
from airflow_ai_provider.lineage.search import search_runs
from airflow_ai_provider.lineage.targets import LineageInputError, OutputTarget, normalize_uri, parse_target
from airflow_ai_provider.runtime.contract import Tag
from airflow_ai_provider.runtime.contract.params import InferParams

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from airflow_ai_provider.runtime.contract.model_reference import ModelReference

#: The steps behind a chain in the order they happen, which orders its DAG runs.
STEP_ORDER = ("validation", "training", "quality gate", "promotion", "rollback", "inference")
#: MLflow error codes that mean the registry has no such model version or alias.
_NOT_IN_REGISTRY = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


class Walk:
    """The hops found so far and the DAG runs behind them, while walking one chain."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.hops: list[Hop] = []
        self.dag_runs: list[tuple[int, DagRunId]] = []

    def add(self, label: str, text: str, found: bool = True, **ids: str | None) -> Hop:
        """Append a hop; ``ids`` left ``None`` are not recorded."""
        hop = Hop(label, text, found, {key: str(value) for key, value in ids.items() if value is not None})
        self.hops.append(hop)
        return hop

    def saw(self, dag_run: DagRunId | None, step: str) -> None:
        """Note a DAG run behind ``step`` (one of :data:`STEP_ORDER`)."""
        if dag_run:
            self.dag_runs.append((STEP_ORDER.index(step), dag_run))

    def ordered_dag_runs(self) -> list[DagRunId]:
        """Each DAG run once, in the order the steps happen: validation first, inference last."""
        ordered: list[DagRunId] = []
        for _, dag_run in sorted(self.dag_runs, key=lambda item: item[0]):
            if dag_run not in ordered:
                ordered.append(dag_run)
        return ordered


def trace(client: MlflowClient, target: str, dag_run_state: DagRunLookup) -> Lineage:
    """The lineage of ``target``: a predictions file or folder, or a model version.

    :raises LineageInputError: the target is malformed, or MLflow knows no inference output or model
        version by that name.
    """
    parsed = parse_target(target)
    walk = Walk(client)
    inference_dag_run = None
    if isinstance(parsed, OutputTarget):
        name, version, used_by, inference_dag_run = _predictions(walk, parsed)
        model = _model_version(walk, name, version, used_by)
    else:
        name, version = parsed.name, resolve_version(client, parsed)
        model = _model_version(walk, name, version)
    if model is not None:
        steps.training_and_data(walk, model)
        decision = steps.quality_gate(walk, name, version)
        steps.approval_and_promotion(walk, model, decision)
    walk.saw(inference_dag_run, "inference")
    ordered = walk.ordered_dag_runs()
    return Lineage(
        target=target,
        hops=walk.hops,
        dag_runs=[DagRunRecord(dag_id, run_id, dag_run_state(dag_id, run_id)) for dag_id, run_id in ordered],
    )


def resolve_version(client: MlflowClient, target: ModelReference) -> str:
    """The version ``target`` names now (an alias is resolved); MLflow call site."""
    from mlflow.exceptions import MlflowException

    try:
        if target.alias:
            return str(client.get_model_version_by_alias(target.name, target.alias).version)
        client.get_model_version(target.name, str(target.version))
    except MlflowException as err:
        if err.error_code in (*_NOT_IN_REGISTRY, "INVALID_PARAMETER_VALUE"):
            what = f"alias {target.alias!r}" if target.alias else f"version {target.version}"
            raise LineageInputError(
                f"model {target.name!r} has no {what} in the registry: check the name and version"
            ) from None
        raise
    return str(target.version)


def _predictions(walk: Walk, target: OutputTarget) -> tuple[str, str, dict[str, str], DagRunId | None]:
    """Add the predictions and inference hops; return the model name and version, the tags of a
    run that used it, and the DAG run."""
    uri = target.uri
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    candidates = search_runs(walk.client, {Tag.JOB: InferParams.job}, {Tag.OUTPUTS: f"%{segment}%"})
    writers = []
    for run in candidates:
        try:
            outputs = [normalize_uri(out) for out in json.loads(run.data.tags.get(Tag.OUTPUTS, "[]"))]
        except (ValueError, LineageInputError):
            continue
        mine = [out for out in outputs if out == uri or out.startswith(f"{uri}/")]
        if mine:
            writers.append((run, mine))
    if not writers:
        raise LineageInputError(
            f"no inference task recorded output {uri}: searched MLflow runs tagged {Tag.JOB}={InferParams.job} "
            f"for it in {Tag.OUTPUTS}; check the URI (a part file or its folder)"
        )
    newest = dag_run_of(writers[0][0].data.tags)
    group = [(run, files) for run, files in writers if dag_run_of(run.data.tags) == newest]
    group.sort(key=lambda item: int(item[0].data.tags.get(Tag.MAP_INDEX, "-1") or -1))
    rows = sum(int(run.data.metrics.get("rows_out", 0)) for run, _ in group)
    files = sorted({out for _, outs in group for out in outs})
    shown = files[0] if files == [uri] else f"{uri} ({len(files)} part file{'s' * (len(files) > 1)})"
    walk.add("predictions", f"{shown} ({rows} rows)", uri=uri, rows=str(rows))
    tasks = ", ".join(f"{task_name(run.data.tags)} ({run_state(run)})" for run, _ in group)
    run_ids = ", ".join(run.info.run_id for run, _ in group)
    earlier = {dag_run_of(run.data.tags) for run, _ in writers} - {newest}
    note = f"; {len(earlier)} earlier DAG run(s) wrote there too" if earlier else ""
    tags = group[0][0].data.tags
    plural = "s" * (len(group) > 1)
    walk.add(
        "inference",
        f"{where(tags)} task{plural} {tasks}, MLflow run{plural} {run_ids}{note}",
        dag_id=tags.get(Tag.DAG_ID),
        run_id=tags.get(Tag.RUN_ID),
        mlflow_run_ids=run_ids,
        input_digest=tags.get(Tag.INPUT_DIGEST),
    )
    versions = {
        (run.data.tags.get(Tag.MODEL_NAME, ""), run.data.tags.get(Tag.MODEL_VERSION, "")) for run, _ in group
    }
    name, version = sorted(versions)[0]
    if len(versions) > 1:
        walk.hops[-1].text += f" (shards used different models: {sorted(versions)})"
    used_by = next(
        run.data.tags
        for run, _ in group
        if (run.data.tags.get(Tag.MODEL_NAME, ""), run.data.tags.get(Tag.MODEL_VERSION, ""))
        == (name, version)
    )
    return name, version, used_by, newest


def _at_inference(version: str, run_tags: dict[str, str], aliases_now: list[str]) -> str:
    """What the inference used: the version and, when it referenced an alias, where that pointed.

    The inference run records the alias with the version it was pinned to: the version the alias
    pointed to when the inference DAG run resolved it, whatever the alias points to now.
    """
    used = "used by the inference"
    if run_tags.get(Tag.FALLBACK_USED) == "true":
        used += (
            " as its fallback model, because the intended one failed: "
            f"{run_tags.get(Tag.FALLBACK_REASON) or 'reason not recorded'}"
        )
    alias = run_tags.get(Tag.MODEL_ALIAS)
    if not alias:
        return used
    moved = "" if alias in aliases_now else f"; {alias} has moved since"
    return f"{used}; alias {alias} pointed to version {version} at inference time (pinned for its DAG run){moved}"


def _model_version(
    walk: Walk, name: str, version: str, inference_tags: dict[str, str] | None = None
) -> ModelVersion | None:
    """Add the model hop from the registry; MLflow call site.

    :param inference_tags: the tags of an inference run that used the version, when the hop
        follows an inference hop: the hop then says what the inference used.
    """
    from mlflow.exceptions import MlflowException

    if not name or not version:
        walk.add(
            "model", f"the inference run has no {Tag.MODEL_NAME} / {Tag.MODEL_VERSION} tags", found=False
        )
        return None
    try:
        model = walk.client.get_model_version(name, version)
    except MlflowException as err:
        if err.error_code not in _NOT_IN_REGISTRY:
            raise
        walk.add("model", f"{name} version {version} is not in the registry (deleted?)", found=False)
        return None
    aliases_now = sorted(model.aliases or [])
    aliases = ", ".join(aliases_now) or "none"
    used = None if inference_tags is None else _at_inference(version, inference_tags, aliases_now)
    inference_alias = (inference_tags or {}).get(Tag.MODEL_ALIAS)
    about = "; ".join(filter(None, [used, f"aliases now: {aliases}"]))
    training_run = f"MLflow run {model.run_id} (training)" if model.run_id else "no MLflow run recorded"
    walk.add(
        "model",
        f"{name} version {version} ({about}), {training_run}",
        name=name,
        version=version,
        mlflow_run_id=model.run_id or None,
        source=model.source,
        alias_at_inference=inference_alias,
        alias_version_at_inference=version if inference_alias else None,
    )
    return model
