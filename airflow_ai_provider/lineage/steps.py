"""The hops behind a model version: training, data, validation, quality gate, approval, promotion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_ai_provider.lineage.records import dag_run_of, job_result, run_state, split_dag_run, where
from airflow_ai_provider.lineage.search import search_runs
from airflow_ai_provider.lineage.targets import same_inputs
from airflow_ai_provider.runtime.contract import Tag
from airflow_ai_provider.runtime.contract.params import EvaluateParams, ValidateParams

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from airflow_ai_provider.lineage.walk import Walk

#: How many of the latest validation runs are searched for the training URI when no digest matches.
VALIDATION_URI_CANDIDATES = 20
#: ``ai.job`` of a promotion task run (``PromoteModelOperator.action``).
PROMOTE_JOB = "promote"


def training_and_data(walk: Walk, model: ModelVersion) -> None:
    """Add the training, data and validation hops."""
    tags = dict(model.tags or {})
    run_tags: dict[str, str] = {}
    if model.run_id:
        try:
            run_tags = dict(walk.client.get_run(model.run_id).data.tags)
        except Exception:
            run_tags = {}
    merged = {**run_tags, **tags}  # the version's own lineage tags win
    dag_run = dag_run_of(merged)
    if dag_run:
        walk.saw(dag_run, "training")
        code = merged.get(Tag.CODE_REFERENCE)
        walk.add(
            "training",
            f"DAG {dag_run[0]} run {dag_run[1]} task {merged.get(Tag.TASK_ID, '?')}"
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
            f"{Tag.DAG_ID} / {Tag.RUN_ID} tags (registered outside an Airflow training task?)",
            found=False,
        )
    digest = merged.get(Tag.TRAINING_DATA_DIGEST)
    data_uri = merged.get(Tag.TRAINING_DATA_URI)
    if not digest and not data_uri:
        walk.add(
            "data",
            f"{model.name} version {model.version} has no {Tag.TRAINING_DATA_URI} / "
            f"{Tag.TRAINING_DATA_DIGEST} tags",
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


def _validation(walk: Walk, data_uri: str | None, digest: str | None) -> None:
    """Add the validation hop: the run that validated the digest, else one that read the URI."""
    validate = {Tag.JOB: ValidateParams.job}
    run = None
    if digest:
        matches = search_runs(walk.client, {**validate, Tag.INPUT_DIGEST: digest}, limit=1)
        run = matches[0] if matches else None
    mismatch = None
    if run is None and data_uri:
        for candidate in search_runs(walk.client, validate, limit=VALIDATION_URI_CANDIDATES):
            result = job_result(walk.client, candidate.info.run_id) or {}
            if same_inputs(str(result.get("input_source", "")), data_uri):
                run, mismatch = candidate, result.get("input_digest")
                break
    if run is None:
        searched = f"digest {digest}" if digest else ""
        if data_uri:
            searched += (
                f"{' or ' if searched else ''}input {data_uri} (last {VALIDATION_URI_CANDIDATES} runs)"
            )
        walk.add(
            "validation",
            f"no validation task run ({Tag.JOB}={ValidateParams.job}) found for {searched}",
            found=False,
        )
        return
    tags, metrics = run.data.tags, run.data.metrics
    walk.saw(dag_run_of(tags), "validation")
    success = tags.get(Tag.VALIDATION_SUCCESS, "")
    outcome = {"true": "success", "false": "failure"}.get(success, run_state(run))
    counts = ""
    if "evaluated_expectations" in metrics:
        counts = (
            f" ({int(metrics.get('successful_expectations', 0))}/{int(metrics['evaluated_expectations'])})"
        )
    text = (
        f"suite {tags.get(Tag.SUITE) or '?'}: {outcome}{counts}, {where(tags)}, "
        f"report {tags.get(Tag.REPORT_URI) or 'not recorded'}, MLflow run {run.info.run_id}"
    )
    found = outcome == "success"
    if mismatch is not None and digest and mismatch != digest:
        text += f"; but it validated digest {mismatch}, not the training data's: the data changed after validation"
        found = False
    walk.add(
        "validation",
        text,
        found=found,
        suite=tags.get(Tag.SUITE),
        dag_id=tags.get(Tag.DAG_ID),
        run_id=tags.get(Tag.RUN_ID),
        mlflow_run_id=run.info.run_id,
        report_uri=tags.get(Tag.REPORT_URI),
    )


def quality_gate(walk: Walk, name: str, version: str) -> str | None:
    """Add the quality gate hop; return its decision (``None``: no gate run found)."""
    gate = {Tag.JOB: EvaluateParams.job, Tag.CHALLENGER_NAME: name, Tag.CHALLENGER_VERSION: version}
    runs = search_runs(walk.client, gate, limit=1)
    if not runs:
        walk.add(
            "quality gate",
            f"no quality gate run ({Tag.JOB}={EvaluateParams.job}) with challenger {name} version {version}",
            found=False,
        )
        return None
    run = runs[0]
    tags = run.data.tags
    walk.saw(dag_run_of(tags), "quality gate")
    decision = tags.get(Tag.DECISION) or "?"
    result = job_result(walk.client, run.info.run_id) or {}
    reasons = "; ".join((result.get("details") or {}).get("reasons") or []) or "reasons not recorded"
    champion = tags.get(Tag.CHAMPION_VERSION, "none")
    against = f"against champion version {champion}" if champion not in ("", "none") else "no champion"
    walk.add(
        "quality gate",
        f"decision {decision}: {reasons} ({against}; {where(tags)}, MLflow run {run.info.run_id})",
        decision=decision,
        dag_id=tags.get(Tag.DAG_ID),
        run_id=tags.get(Tag.RUN_ID),
        mlflow_run_id=run.info.run_id,
    )
    return decision


def _approval(walk: Walk, tags: dict[str, str]) -> None:
    """Add the approval hop from the version's tags."""
    approved_by = tags.get(Tag.APPROVED_BY)
    if approved_by:
        comment = tags.get(Tag.APPROVAL_COMMENT)
        walk.add(
            "approval",
            f"approved by {approved_by} at {tags.get(Tag.APPROVED_AT) or '?'}"
            + (f' ("{comment}")' if comment else ""),
            approved_by=approved_by,
            approved_at=tags.get(Tag.APPROVED_AT),
        )
    elif tags.get(Tag.PROMOTED_AT):
        walk.add("approval", "no approval step (promoted without a human approval task)")
    else:
        walk.add("approval", "none (not promoted)")


def approval_and_promotion(walk: Walk, model: ModelVersion, decision: str | None) -> None:
    """Add the approval and promotion hops, and the rollback hop when the version was rolled back."""
    tags = dict(model.tags or {})
    _approval(walk, tags)
    promoted_at = tags.get(Tag.PROMOTED_AT)
    if not promoted_at:
        if decision == "reject":
            walk.add("promotion", f"not promoted (the quality gate rejected version {model.version})")
        else:
            walk.add(
                "promotion",
                f"{model.name} version {model.version} has no {Tag.PROMOTED_AT} tag "
                "(promoted by hand or not at all)",
                found=False,
            )
        return
    dag_run = split_dag_run(tags.get(Tag.PROMOTED_BY_DAG_RUN, ""))
    walk.saw(dag_run, "promotion")
    alias = "alias"
    promotion = {Tag.JOB: PROMOTE_JOB, Tag.MODEL_NAME: model.name, Tag.VERSION: str(model.version)}
    runs = search_runs(walk.client, promotion, limit=1)
    if runs:
        alias = runs[0].data.tags.get(Tag.ALIAS) or alias
    reason = tags.get(Tag.PROMOTION_REASON)
    by = f"DAG {dag_run[0]} run {dag_run[1]}" if dag_run else "an unrecorded DAG run"
    walk.add(
        "promotion",
        f"{alias} moved {tags.get(Tag.REPLACED_VERSION, '?')} -> {model.version} at {promoted_at} by {by}"
        + (f' ("{reason}")' if reason else ""),
        alias=alias,
        promoted_at=promoted_at,
        dag_id=dag_run[0] if dag_run else None,
        run_id=dag_run[1] if dag_run else None,
    )
    if tags.get(Tag.ROLLED_BACK_AT):
        _rollback(walk, tags)


def _rollback(walk: Walk, tags: dict[str, str]) -> None:
    """Add the rollback hop from the version's tags."""
    back = split_dag_run(tags.get(Tag.ROLLED_BACK_BY_DAG_RUN, ""))
    walk.saw(back, "rollback")
    reason = tags.get(Tag.ROLLBACK_REASON)
    walk.add(
        "rollback",
        f"rolled back at {tags[Tag.ROLLED_BACK_AT]} by "
        + (f"DAG {back[0]} run {back[1]}" if back else "an unrecorded DAG run")
        + (f' ("{reason}")' if reason else ""),
    )
