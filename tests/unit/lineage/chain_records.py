"""Records made the way the operators make them, for the lineage tests to walk.

The records live in a real MLflow SQLite store: task runs are booked with
``mlflow_runs.start_task_run`` and filled by the operators' own ``record_result``; the promotion goes
through ``alias_ledger.move_alias`` with the promotion operator's version tags. Training version tags
are the ones the training job writes.
"""

from __future__ import annotations

from airflow_ai_provider.hooks.mlflow import MlflowHook
from airflow_ai_provider.mlflow_runs import RunIdentity, finish_task_run, start_task_run

DIGEST = "3882d419c763" + "a" * 52
OLD_DIGEST = "0" * 64
NEW_DIGEST = "1" * 64
DATA_URI = "file:///data/validated/2026-01-01"
REPORT_URI = "file:///data/validated/_validation/churn_customers/"
OUT = "s3://bucket/predictions/manual__2026-01-02"
CODE = "dag_templates.include.churn_training:train"
INGEST = ("churn_ingest", "manual__2026-01-01")
RETRAIN = ("churn_retrain", "asset_triggered__2026-01-01")
SCORING = ("churn_batch_inference", "manual__2026-01-02")
MOVED_OUT = "s3://bucket/predictions/manual__moved"
MOVED_SCORING = ("churn_batch_inference", "manual__moved")
FALLBACK_OUT = "s3://bucket/predictions/manual__fell_back"
FALLBACK_SCORING = ("churn_batch_inference", "manual__fell_back")
FALLBACK_REASON = "model fell_back version 2 cannot be loaded: missing dependency"
STATES = {
    INGEST: "success",
    RETRAIN: "success",
    SCORING: "success",
    MOVED_SCORING: "success",
    FALLBACK_SCORING: "success",
}


def _task(hook, dag_run, task_id, job, map_index=-1):
    who = RunIdentity(dag_run[0], dag_run[1], task_id, map_index=map_index, extra_tags={"ai.job": job})
    return who, start_task_run(hook, who, f"airflow/{dag_run[0]}")


def _validated(hook, dag_run, data_uri, digest, task_id="validate"):
    from airflow_ai_provider.operators.data_validation import DataValidationOperator

    who, run = _task(hook, dag_run, task_id, "validate")
    op = DataValidationOperator(
        task_id=task_id,
        input_uri=data_uri,
        expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}],
    )
    details = {"suite": "churn_customers", "success": True, "report_uri": REPORT_URI, "results": []}
    metrics = {"evaluated_expectations": 17, "successful_expectations": 17}
    result = {"status": "success", "input_digest": digest, "input_source": data_uri, "rows_in": 500}
    op.record_result(run, {**result, "details": details, "metrics": metrics})
    finish_task_run(hook, run, who, succeeded=True)


def _trained(hook, client, name, dag_run, data_uri, digest):
    """A version registered by a training task, with the lineage tags the training job sets."""
    who, run = _task(hook, dag_run, "train", "train")
    tags = {
        "airflow.dag_id": dag_run[0],
        "airflow.run_id": dag_run[1],
        "airflow.task_id": "train",
        "ai.training_data_digest": digest,
        "ai.training_data_uri": data_uri,
        "ai.code_reference": CODE,
    }
    version = client.create_model_version(name, source="file:///models/m", run_id=run.run_id, tags=tags)
    client.set_tag(run.run_id, "ai.training_data_digest", digest)
    finish_task_run(hook, run, who, succeeded=True)
    return str(version.version), run.run_id


def _gated(hook, dag_run, name, version, champion, decision, reasons):
    from airflow_ai_provider.operators.quality_gate import QualityGateOperator

    who, run = _task(hook, dag_run, "gate", "evaluate")
    op = QualityGateOperator(
        task_id="gate", challenger=f"{name}@challenger", holdout_uri="/h", label_column="churned"
    )
    details = {
        "decision": decision,
        "reasons": reasons,
        "challenger": {"name": name, "version": version},
        "champion": {"name": name, "version": champion} if champion else None,
    }
    op.record_result(run, {"status": "success", "details": details, "metrics": {"accuracy": 0.8}})
    finish_task_run(hook, run, who, succeeded=True)


def _promoted(hook, dag_run, name, previous, version, approval):
    from airflow_ai_provider.alias_ledger import AliasMove, move_alias
    from airflow_ai_provider.operators.promotion import PromoteModelOperator

    who, run = _task(hook, dag_run, "promote", "promote")
    op = PromoteModelOperator(task_id="promote", model=f"{name}@challenger", reason="gate passed")
    tags = {**op.target_tags(previous, f"{dag_run[0]}/{dag_run[1]}"), **approval}
    move_alias(
        hook, AliasMove(name, "champion", previous, version, f"{dag_run[0]}/{dag_run[1]}/promote"), tags
    )
    with hook.client() as client:
        for key, value in {"model_name": name, "alias": "champion", "version": version}.items():
            client.set_tag(run.run_id, f"ai.{key}", value)
    finish_task_run(hook, run, who, succeeded=True)


def _scored(hook, dag_run, name, version, rows, out=OUT, fallback=None):
    """Shards scored through ``<name>@champion``; with ``fallback`` (a reason), the version given
    is the fallback ``champion_previous`` that scored after champion's version failed to load."""
    from airflow_ai_provider.operators.inference import BatchInferenceOperator

    for index, count in enumerate(rows):
        who, run = _task(hook, dag_run, "score", "infer", map_index=index)
        op = BatchInferenceOperator(
            task_id="score", model=f"{name}@champion", input_uri="s3://bucket/scoring/", output_uri=out,
            shard_index=index, shard_count=len(rows),
        )  # fmt: skip
        part = f"{out}/part-{index:05d}-of-{len(rows):05d}.parquet"
        alias = "champion_previous" if fallback else "champion"
        model = {"name": name, "version": version, "alias": alias, "uri": f"models:/{name}/{version}"}
        result = {"status": "success", "model": model, "outputs": [{"uri": part}], "rows_out": count}
        if fallback:
            result["fallback"] = {"used": True, "reason": fallback, "intended_model": {"name": name}}
        op.record_result(run, {**result, "input_digest": "f" * 64, "metrics": {}})
        finish_task_run(hook, run, who, succeeded=True)


def record_histories(hook: MlflowHook) -> None:
    """Records of several models' histories in the hook's store; see each test for its model."""
    with hook.client() as client:
        for name in ("churn", "lonely", "rejected", "changed", "manual", "moved", "fell_back"):
            client.create_registered_model(name)
        # churn: v1 champion; v2 validated data -> trained -> gate -> approved -> promoted -> scored.
        client.create_model_version("churn", source="file:///models/v1")
        client.set_registered_model_alias("churn", "champion", "1")
        _validated(hook, INGEST, DATA_URI, DIGEST)
        version, _ = _trained(hook, client, "churn", RETRAIN, DATA_URI, DIGEST)
        reasons = ["compared with champion v1", "accuracy 0.81 >= minimum 0.75"]
        _gated(hook, RETRAIN, "churn", version, "1", "promote", reasons)
        approval = {"ai.approved_by": "admin", "ai.approved_at": "2026-01-01T10:00:00Z",
                    "ai.approval_comment": "looks good"}  # fmt: skip
        _promoted(hook, RETRAIN, "churn", "1", version, approval)
        _scored(hook, SCORING, "churn", version, [30, 20])
        # The other models, each retrained in a DAG run of its own.
        other = {name: (RETRAIN[0], f"manual__{name}") for name in ("rejected", "changed", "manual")}
        # lonely: registered by hand, nothing else recorded.
        client.create_model_version("lonely", source="file:///models/l")
        # rejected: validated and trained, the gate said no.
        version, _ = _trained(hook, client, "rejected", other["rejected"], DATA_URI, DIGEST)
        _gated(hook, other["rejected"], "rejected", version, None, "reject", ["accuracy 0.52 < minimum 0.75"])
        # changed: its data URI was validated, but with other content than it was trained on.
        _validated(hook, INGEST, "file:///data/raw/2026-01-01", OLD_DIGEST, task_id="validate_raw")
        version, _ = _trained(hook, client, "changed", other["changed"], "/data/raw/2026-01-01", NEW_DIGEST)
        # manual: gate passed, promoted with no approval step.
        version, _ = _trained(hook, client, "manual", other["manual"], DATA_URI, DIGEST)
        _gated(
            hook,
            other["manual"],
            "manual",
            version,
            None,
            "promote",
            ["no champion yet: absolute thresholds only"],
        )
        _promoted(hook, other["manual"], "manual", None, version, {})
        # moved: scored through champion at v1, then champion moved to v2 by hand.
        for source in ("file:///models/moved1", "file:///models/moved2"):
            client.create_model_version("moved", source=source)
        client.set_registered_model_alias("moved", "champion", "1")
        _scored(hook, MOVED_SCORING, "moved", "1", [10], out=MOVED_OUT)
        client.set_registered_model_alias("moved", "champion", "2")
        # fell_back: champion v2 could not be loaded, its fallback champion_previous v1 scored.
        for source in ("file:///models/fell1", "file:///models/fell2"):
            client.create_model_version("fell_back", source=source)
        client.set_registered_model_alias("fell_back", "champion_previous", "1")
        client.set_registered_model_alias("fell_back", "champion", "2")
        _scored(hook, FALLBACK_SCORING, "fell_back", "1", [10], out=FALLBACK_OUT, fallback=FALLBACK_REASON)


def hop(lines: list[str], label: str) -> str:
    """The one printed line of the hop ``label``, with its whitespace collapsed."""
    (line,) = [line for line in lines if line.lstrip("<- ").startswith(f"{label} ")]
    return " ".join(line.split())
