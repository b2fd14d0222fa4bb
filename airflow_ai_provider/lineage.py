"""Walk the lineage of predictions or of a model version through MLflow and Airflow records.

The chain, newest first: predictions <- inference task <- model version <- training task <- training
data (URI and digest) <- data validation <- quality gate decision <- approval <- promotion, and the
Airflow DAG runs behind them. Everything is read from what the operators record (run and model
version tags, ``job_result.json`` artifacts); nothing is changed. A record that cannot be found
becomes a hop marked *not recorded*, saying what was searched.

:func:`trace` takes an ``MlflowClient`` and a DAG-run state lookup (``(dag_id, run_id) -> state``),
so it runs the same against a tracking server, a SQLite store or a test's fixtures.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from airflow_ai_provider.runtime.contract import Artifact, Tag
from airflow_ai_provider.runtime.contract.model_reference import ModelReference

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

#: ``(dag_id, run_id) -> state``; ``None`` when the state cannot be known.
DagRunLookup = Callable[[str, str], "str | None"]

_VALIDATION_URI_CANDIDATES = 20
_STEP_ORDER = ("validation", "training", "quality gate", "promotion", "rollback", "inference")
_RUN_STATES = {"FINISHED": "success", "FAILED": "failed", "RUNNING": "running", "KILLED": "killed"}


class LineageInputError(ValueError):
    """The target is not a predictions URI or model version that MLflow knows (one line)."""


@dataclass
class Hop:
    """One link of the chain: a label, one line of text, and whether its record was found."""

    label: str
    text: str
    found: bool = True
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DagRunRecord:
    """An Airflow DAG run the chain passes through, with its state (``None``: unknown)."""

    dag_id: str
    run_id: str
    state: str | None


@dataclass
class Lineage:
    """The chain for one target: ``hops`` newest first, then the DAG runs involved, oldest first."""

    target: str
    hops: list[Hop] = field(default_factory=list)
    dag_runs: list[DagRunRecord] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(hop.found for hop in self.hops)

    def render(self) -> str:
        """The chain as text: the first hop, then ``<-`` lines, then one ``DAG runs:`` line."""
        width = max((len(hop.label) for hop in self.hops), default=0)
        lines = []
        for position, hop in enumerate(self.hops):
            text = hop.text if hop.found else f"not recorded: {hop.text}"
            prefix = "" if position == 0 else "  <- "
            lines.append(f"{prefix}{hop.label.ljust(width)}  {text}")
        runs = "; ".join(f"{r.dag_id}/{r.run_id} {r.state or 'state unknown'}" for r in self.dag_runs)
        lines.append(f"DAG runs: {runs or 'none recorded'}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "complete": self.complete,
            "hops": [
                {"hop": hop.label, "found": hop.found, "text": hop.text, "ids": hop.ids} for hop in self.hops
            ],
            "dag_runs": [{"dag_id": r.dag_id, "run_id": r.run_id, "state": r.state} for r in self.dag_runs],
        }


# --- targets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputTarget:
    uri: str  # normalised: file:///abs/path or s3://bucket/key, no trailing slash


def normalize_uri(uri: str) -> str:
    """``file:///abs``, ``/abs``, ``relative`` or ``s3://b/k`` as ``file:///abs`` or ``s3://b/k``."""
    parsed = urlparse(uri.strip())
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise LineageInputError(f"S3 URI has no bucket: {uri}")
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise LineageInputError(f"file URI must be absolute (file:///path): {uri}")
        return f"file://{os.path.abspath(parsed.path)}"
    if parsed.scheme and len(parsed.scheme) > 1:
        raise LineageInputError(
            f"unsupported URI scheme {parsed.scheme!r} in {uri}: give a file://, s3:// or local path "
            "of predictions, or a model version such as models:/churn/3"
        )
    return f"file://{os.path.abspath(uri.strip())}"


def parse_target(text: str) -> ModelReference | OutputTarget:
    """A model version (``models:/churn/3``, ``churn/3``, ``churn@champion``) or a predictions URI.

    ``churn/3`` is a model version unless a local path of that name exists.
    """
    text = text.strip()
    if not text:
        raise LineageInputError("no target given: pass a predictions URI or a model version such as churn/3")
    try:
        model = ModelReference.parse(text, LineageInputError)
    except LineageInputError:
        model = None
    if model and (model.version or model.alias) and (text.startswith("models:/") or not os.path.exists(text)):
        return model
    if text.startswith("models:/"):
        raise LineageInputError(
            f"model reference {text!r} is not a model version: use models:/<name>/<version> or <name>@<alias>"
        )
    return OutputTarget(normalize_uri(text))


# --- MLflow searches ---------------------------------------------------------------------------------


def _quoted(value: str) -> str | None:
    """``value`` as an MLflow filter literal, or ``None`` when it cannot be one (has a quote)."""
    return None if "'" in value else f"'{value}'"


def _filter(tags: dict[str, str], like: dict[str, str] | None = None) -> str | None:
    parts = []
    for key, value in tags.items():
        literal = _quoted(value)
        if literal is None:
            return None
        parts.append(f"tags.`{key}` = {literal}")
    for key, pattern in (like or {}).items():
        literal = _quoted(pattern)
        if literal is not None:
            parts.append(f"tags.`{key}` LIKE {literal}")
    return " and ".join(parts)


def search_runs(client: MlflowClient, tags: dict[str, str], like: dict[str, str] | None = None,
                limit: int = 1000) -> list[Run]:  # fmt: skip
    """Runs of every active experiment whose tags equal ``tags`` (and match ``like``), newest first."""
    filter_string = _filter(tags, like)
    if filter_string is None:
        return []
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    found: list[Run] = []
    for start in range(0, len(experiment_ids), 100):
        token = None
        while True:
            page = client.search_runs(
                experiment_ids[start : start + 100],
                filter_string=filter_string,
                max_results=min(limit, 1000),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            found.extend(page)
            token = page.token
            if not token or len(found) >= limit:
                break
    found.sort(key=lambda run: (run.info.start_time or 0, run.info.run_id), reverse=True)
    return found[:limit]


def _job_result(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """The ``job_result.json`` an AI task logged into its run, or ``None``."""
    with tempfile.TemporaryDirectory(prefix="ai-lineage-") as scratch:
        try:
            path = client.download_artifacts(run_id, Artifact.JOB_RESULT, scratch)
            with open(path) as handle:
                return json.load(handle)
        except Exception:
            return None


def _state(run: Run) -> str:
    return _RUN_STATES.get(run.info.status, run.info.status.lower())


def _task_name(tags: dict[str, str]) -> str:
    task, map_index = tags.get(Tag.TASK_ID, "?"), tags.get(Tag.MAP_INDEX, "-1")
    return task if map_index in ("", "-1") else f"{task}[{map_index}]"


def _dag_run_of(tags: dict[str, str]) -> tuple[str, str] | None:
    if tags.get(Tag.DAG_ID) and tags.get(Tag.RUN_ID):
        return tags[Tag.DAG_ID], tags[Tag.RUN_ID]
    return None


def _where(tags: dict[str, str]) -> str:
    dag_run = _dag_run_of(tags)
    return f"DAG {dag_run[0]} run {dag_run[1]}" if dag_run else "no Airflow DAG run recorded"


# --- the walk ----------------------------------------------------------------------------------------


class _Walk:
    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self.hops: list[Hop] = []
        self.dag_runs: list[tuple[int, tuple[str, str]]] = []

    def add(self, label: str, text: str, found: bool = True, **ids: str | None) -> Hop:
        hop = Hop(label, text, found, {key: str(value) for key, value in ids.items() if value is not None})
        self.hops.append(hop)
        return hop

    def saw(self, dag_run: tuple[str, str] | None, step: str) -> None:
        """Note a DAG run behind ``step`` (one of :data:`_STEP_ORDER`)."""
        if dag_run:
            self.dag_runs.append((_STEP_ORDER.index(step), dag_run))

    def ordered_dag_runs(self) -> list[tuple[str, str]]:
        """Each DAG run once, in the order the steps happen: validation first, inference last."""
        ordered: list[tuple[str, str]] = []
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
    walk = _Walk(client)
    inference_dag_run = None
    if isinstance(parsed, OutputTarget):
        name, version, alias, inference_dag_run = _predictions(walk, parsed)
        model = _model_version(walk, name, version, f"alias {alias} at inference time" if alias else None)
    else:
        name, version = parsed.name, _resolve_version(client, parsed)
        model = _model_version(walk, name, version, None)
    if model is not None:
        _training_and_data(walk, model)
        decision = _quality_gate(walk, name, version)
        _approval_and_promotion(walk, model, decision)
    walk.saw(inference_dag_run, "inference")
    ordered = walk.ordered_dag_runs()
    return Lineage(
        target=target,
        hops=walk.hops,
        dag_runs=[DagRunRecord(dag_id, run_id, dag_run_state(dag_id, run_id)) for dag_id, run_id in ordered],
    )


def _resolve_version(client: MlflowClient, target: ModelReference) -> str:
    from mlflow.exceptions import MlflowException

    try:
        if target.alias:
            return str(client.get_model_version_by_alias(target.name, target.alias).version)
        client.get_model_version(target.name, str(target.version))
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            what = f"alias {target.alias!r}" if target.alias else f"version {target.version}"
            raise LineageInputError(
                f"model {target.name!r} has no {what} in the registry: check the name and version"
            ) from None
        raise
    return str(target.version)


def _predictions(walk: _Walk, target: OutputTarget) -> tuple[str, str, str | None, tuple[str, str] | None]:
    """Add the predictions and inference hops; return model name, version, alias and the DAG run."""
    uri = target.uri
    segment = uri.rstrip("/").rsplit("/", 1)[-1]
    candidates = search_runs(walk.client, {"ai.job": "infer"}, {"ai.outputs": f"%{segment}%"})
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
            f"no inference task recorded output {uri}: searched MLflow runs tagged ai.job=infer for it in "
            "ai.outputs; check the URI (a part file or its folder)"
        )
    newest = _dag_run_of(writers[0][0].data.tags)
    group = [(run, files) for run, files in writers if _dag_run_of(run.data.tags) == newest]
    group.sort(key=lambda item: int(item[0].data.tags.get(Tag.MAP_INDEX, "-1") or -1))
    rows = sum(int(run.data.metrics.get("rows_out", 0)) for run, _ in group)
    files = sorted({out for _, outs in group for out in outs})
    shown = files[0] if files == [uri] else f"{uri} ({len(files)} part file{'s' * (len(files) > 1)})"
    walk.add("predictions", f"{shown} ({rows} rows)", uri=uri, rows=str(rows))
    tasks = ", ".join(f"{_task_name(run.data.tags)} ({_state(run)})" for run, _ in group)
    run_ids = ", ".join(run.info.run_id for run, _ in group)
    earlier = {_dag_run_of(run.data.tags) for run, _ in writers} - {newest}
    note = f"; {len(earlier)} earlier DAG run(s) wrote there too" if earlier else ""
    tags = group[0][0].data.tags
    walk.add(
        "inference",
        f"{_where(tags)} task{'s' * (len(group) > 1)} {tasks}, MLflow run{'s' * (len(group) > 1)} {run_ids}{note}",
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
    return name, version, tags.get(Tag.MODEL_ALIAS), newest


def _model_version(walk: _Walk, name: str, version: str, context: str | None) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    if not name or not version:
        walk.add("model", "the inference run has no ai.model_name / ai.model_version tags", found=False)
        return None
    try:
        model = walk.client.get_model_version(name, version)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            raise
        walk.add("model", f"{name} version {version} is not in the registry (deleted?)", found=False)
        return None
    aliases = ", ".join(sorted(model.aliases or [])) or "none"
    about = "; ".join(filter(None, [context, f"aliases now: {aliases}"]))
    training_run = f"MLflow run {model.run_id} (training)" if model.run_id else "no MLflow run recorded"
    walk.add(
        "model",
        f"{name} version {version} ({about}), {training_run}",
        name=name,
        version=version,
        mlflow_run_id=model.run_id or None,
        source=model.source,
    )
    return model


def _training_and_data(walk: _Walk, model: ModelVersion) -> None:
    """Add the training, data and validation hops."""
    tags = dict(model.tags or {})
    run_tags: dict[str, str] = {}
    if model.run_id:
        try:
            run_tags = dict(walk.client.get_run(model.run_id).data.tags)
        except Exception:
            run_tags = {}
    merged = {**run_tags, **tags}  # the version's own lineage tags win
    dag_run = _dag_run_of(merged)
    if dag_run:
        walk.saw(dag_run, "training")
        code = merged.get("ai.code_reference")
        walk.add(
            "training",
            f"DAG {dag_run[0]} run {dag_run[1]} task {merged.get('airflow.task_id', '?')}"
            + (f", code {code}" if code else ", code not recorded"),
            dag_id=dag_run[0],
            run_id=dag_run[1],
            task_id=merged.get(Tag.TASK_ID),
            code_reference=code,
        )
    else:
        walk.add(
            "training",
            f"{model.name} version {model.version} and its run {model.run_id or '-'} have no "
            "airflow.dag_id / airflow.run_id tags (registered outside an Airflow training task?)",
            found=False,
        )
    digest = merged.get("ai.training_data_digest")
    data_uri = merged.get("ai.training_data_uri")
    if not digest and not data_uri:
        walk.add(
            "data",
            f"{model.name} version {model.version} has no ai.training_data_uri / ai.training_data_digest tags",
            found=False,
        )
        walk.add("validation", "no training data recorded to look for", found=False)
        return
    walk.add(
        "data",
        f"{data_uri or 'URI not recorded'} digest {digest or 'not recorded'}",
        uri=data_uri,
        digest=digest,
    )
    _validation(walk, data_uri, digest)


def _same_inputs(first: str, second: str) -> bool:
    try:
        return {normalize_uri(u) for u in first.split(",") if u} == {
            normalize_uri(u) for u in second.split(",") if u
        }
    except LineageInputError:
        return False


def _validation(walk: _Walk, data_uri: str | None, digest: str | None) -> None:
    run = None
    if digest:
        matches = search_runs(walk.client, {"ai.job": "validate", Tag.INPUT_DIGEST: digest}, limit=1)
        run = matches[0] if matches else None
    mismatch = None
    if run is None and data_uri:
        for candidate in search_runs(walk.client, {"ai.job": "validate"}, limit=_VALIDATION_URI_CANDIDATES):
            result = _job_result(walk.client, candidate.info.run_id) or {}
            if _same_inputs(str(result.get("input_source", "")), data_uri):
                run, mismatch = candidate, result.get("input_digest")
                break
    if run is None:
        searched = f"digest {digest}" if digest else ""
        if data_uri:
            searched += (
                f"{' or ' if searched else ''}input {data_uri} (last {_VALIDATION_URI_CANDIDATES} runs)"
            )
        walk.add("validation", f"no validation task run (ai.job=validate) found for {searched}", found=False)
        return
    tags, metrics = run.data.tags, run.data.metrics
    walk.saw(_dag_run_of(tags), "validation")
    success = tags.get("ai.validation_success", "")
    outcome = {"true": "success", "false": "failure"}.get(success, _state(run))
    counts = ""
    if "evaluated_expectations" in metrics:
        counts = (
            f" ({int(metrics.get('successful_expectations', 0))}/{int(metrics['evaluated_expectations'])})"
        )
    text = (
        f"suite {tags.get('ai.suite') or '?'}: {outcome}{counts}, {_where(tags)}, "
        f"report {tags.get('ai.report_uri') or 'not recorded'}, MLflow run {run.info.run_id}"
    )
    found = outcome == "success"
    if mismatch is not None and digest and mismatch != digest:
        text += f"; but it validated digest {mismatch}, not the training data's: the data changed after validation"
        found = False
    walk.add(
        "validation",
        text,
        found=found,
        suite=tags.get("ai.suite"),
        dag_id=tags.get(Tag.DAG_ID),
        run_id=tags.get(Tag.RUN_ID),
        mlflow_run_id=run.info.run_id,
        report_uri=tags.get("ai.report_uri"),
    )


def _quality_gate(walk: _Walk, name: str, version: str) -> str | None:
    runs = search_runs(
        walk.client,
        {"ai.job": "evaluate", "ai.challenger_name": name, "ai.challenger_version": version},
        limit=1,
    )
    if not runs:
        walk.add(
            "quality gate",
            f"no quality gate run (ai.job=evaluate) with challenger {name} version {version}",
            found=False,
        )
        return None
    run = runs[0]
    tags = run.data.tags
    walk.saw(_dag_run_of(tags), "quality gate")
    decision = tags.get("ai.decision") or "?"
    result = _job_result(walk.client, run.info.run_id) or {}
    reasons = "; ".join((result.get("details") or {}).get("reasons") or []) or "reasons not recorded"
    champion = tags.get("ai.champion_version", "none")
    against = f"against champion version {champion}" if champion not in ("", "none") else "no champion"
    walk.add(
        "quality gate",
        f"decision {decision}: {reasons} ({against}; {_where(tags)}, MLflow run {run.info.run_id})",
        decision=decision,
        dag_id=tags.get(Tag.DAG_ID),
        run_id=tags.get(Tag.RUN_ID),
        mlflow_run_id=run.info.run_id,
    )
    return decision


def _split_dag_run(value: str) -> tuple[str, str] | None:
    dag_id, _, run_id = value.partition("/")
    return (dag_id, run_id) if dag_id and run_id else None


def _approval_and_promotion(walk: _Walk, model: ModelVersion, decision: str | None) -> None:
    tags = dict(model.tags or {})
    promoted_at = tags.get("ai.promoted_at")
    if tags.get("ai.approved_by"):
        comment = tags.get("ai.approval_comment")
        walk.add(
            "approval",
            f"approved by {tags['ai.approved_by']} at {tags.get('ai.approved_at') or '?'}"
            + (f' ("{comment}")' if comment else ""),
            approved_by=tags["ai.approved_by"],
            approved_at=tags.get("ai.approved_at"),
        )
    elif promoted_at:
        walk.add("approval", "no approval step (promoted without a human approval task)")
    else:
        walk.add("approval", "none (not promoted)")
    if not promoted_at:
        if decision == "reject":
            walk.add("promotion", f"not promoted (the quality gate rejected version {model.version})")
        else:
            walk.add(
                "promotion",
                f"{model.name} version {model.version} has no ai.promoted_at tag (promoted by hand or not at all)",
                found=False,
            )
        return
    dag_run = _split_dag_run(tags.get("ai.promoted_by_dag_run", ""))
    walk.saw(dag_run, "promotion")
    alias = "alias"
    runs = search_runs(
        walk.client,
        {"ai.job": "promote", Tag.MODEL_NAME: model.name, "ai.version": str(model.version)},
        limit=1,
    )
    if runs:
        alias = runs[0].data.tags.get("ai.alias") or alias
    reason = tags.get("ai.promotion_reason")
    by = f"DAG {dag_run[0]} run {dag_run[1]}" if dag_run else "an unrecorded DAG run"
    walk.add(
        "promotion",
        f"{alias} moved {tags.get('ai.replaced_version', '?')} -> {model.version} at {promoted_at} by {by}"
        + (f' ("{reason}")' if reason else ""),
        alias=alias,
        promoted_at=promoted_at,
        dag_id=dag_run[0] if dag_run else None,
        run_id=dag_run[1] if dag_run else None,
    )
    if tags.get("ai.rolled_back_at"):
        back = _split_dag_run(tags.get("ai.rolled_back_by_dag_run", ""))
        walk.saw(back, "rollback")
        walk.add(
            "rollback",
            f"rolled back at {tags['ai.rolled_back_at']} by "
            + (f"DAG {back[0]} run {back[1]}" if back else "an unrecorded DAG run")
            + (f' ("{tags["ai.rollback_reason"]}")' if tags.get("ai.rollback_reason") else ""),
        )


# --- Airflow DAG-run states --------------------------------------------------------------------------


def airflow_dag_run_states() -> DagRunLookup:
    """A lookup of DAG-run states in the Airflow metadata DB of this ``AIRFLOW_HOME``.

    Any failure to reach it (no database yet, no Airflow configured, a DB error) makes every state
    ``None`` (unknown) instead of an error; a missing SQLite file is not created.
    """
    broken = False

    def lookup(dag_id: str, run_id: str) -> str | None:
        nonlocal broken
        if broken:
            return None
        try:
            from airflow.configuration import conf
            from airflow.models.dagrun import DagRun
            from airflow.utils.session import create_session
            from sqlalchemy import select

            url = conf.get("database", "sql_alchemy_conn")
            if url.startswith("sqlite:///") and not os.path.exists(
                url.removeprefix("sqlite:///").split("?")[0]
            ):
                broken = True
                return None
            with create_session() as session:
                state = session.scalar(
                    select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                )
        except Exception:
            broken = True
            return None
        return (
            str(state.value if hasattr(state, "value") else state)
            if state is not None
            else "not in Airflow DB"
        )

    return lookup
