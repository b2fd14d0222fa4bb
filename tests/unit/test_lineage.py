"""``airflow-ai lineage``: the chain walked over records made the way the operators make them.

The records live in a real MLflow SQLite store: task runs are booked with the hook's
``start_task_run`` and filled by the operators' own ``record_result``; the promotion goes through
``mlflow_registry.move_alias`` with the promotion operator's version tags. Training version tags are the
ones the training job writes.
"""

from __future__ import annotations

import json
import os

import pytest

from airflow_ai_provider import cli, lineage
from airflow_ai_provider.hooks.mlflow import MlflowHook, RunIdentity

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
STATES = {INGEST: "success", RETRAIN: "success", SCORING: "success"}


def _task(hook, dag_run, task_id, job, map_index=-1):
    who = RunIdentity(dag_run[0], dag_run[1], task_id, map_index=map_index, extra_tags={"ai.job": job})
    return who, hook.start_task_run(who, f"airflow/{dag_run[0]}")


def _validated(hook, dag_run, data_uri, digest, task_id="validate"):
    from airflow_ai_provider.operators.validation import DataValidationOperator

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
    hook.finish_task_run(run, who, succeeded=True)


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
    hook.finish_task_run(run, who, succeeded=True)
    return str(version.version), run.run_id


def _gated(hook, dag_run, name, version, champion, decision, reasons):
    from airflow_ai_provider.operators.evaluation import ModelValidationOperator

    who, run = _task(hook, dag_run, "gate", "evaluate")
    op = ModelValidationOperator(
        task_id="gate", challenger=f"{name}@challenger", holdout_uri="/h", label_column="churned"
    )
    details = {
        "decision": decision,
        "reasons": reasons,
        "challenger": {"name": name, "version": version},
        "champion": {"name": name, "version": champion} if champion else None,
    }
    op.record_result(run, {"status": "success", "details": details, "metrics": {"accuracy": 0.8}})
    hook.finish_task_run(run, who, succeeded=True)


def _promoted(hook, dag_run, name, previous, version, approval):
    from airflow_ai_provider.mlflow_registry import AliasMove, move_alias
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
    hook.finish_task_run(run, who, succeeded=True)


def _scored(hook, dag_run, name, version, rows):
    from airflow_ai_provider.operators.inference import BatchInferenceOperator

    for index, count in enumerate(rows):
        who, run = _task(hook, dag_run, "score", "infer", map_index=index)
        op = BatchInferenceOperator(
            task_id="score", model=f"{name}@champion", input_uri="s3://bucket/scoring/", output_uri=OUT,
            shard_index=index, shard_count=len(rows),
        )  # fmt: skip
        part = f"{OUT}/part-{index:05d}-of-{len(rows):05d}.parquet"
        model = {"name": name, "version": version, "alias": "champion", "uri": f"models:/{name}/{version}"}
        result = {"status": "success", "model": model, "outputs": [{"uri": part}], "rows_out": count}
        op.record_result(run, {**result, "input_digest": "f" * 64, "metrics": {}})
        hook.finish_task_run(run, who, succeeded=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """Records of several models' histories in one SQLite store; see each test for its model."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        hook = MlflowHook()
        with hook.client() as client:
            for name in ("churn", "lonely", "rejected", "changed", "manual"):
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
            _gated(
                hook, other["rejected"], "rejected", version, None, "reject", ["accuracy 0.52 < minimum 0.75"]
            )
            # changed: its data URI was validated, but with other content than it was trained on.
            _validated(hook, INGEST, "file:///data/raw/2026-01-01", OLD_DIGEST, task_id="validate_raw")
            version, _ = _trained(
                hook, client, "changed", other["changed"], "/data/raw/2026-01-01", NEW_DIGEST
            )
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
    return uri


@pytest.fixture
def lineage_cli(store, monkeypatch, capsys):
    """Run ``airflow-ai lineage`` in-process with Airflow DAG-run states from ``STATES``."""
    monkeypatch.setattr(lineage, "airflow_dag_run_states", lambda: lambda d, r: STATES.get((d, r)))

    def run(*args: str) -> tuple[int, list[str], str]:
        code = cli.main(["lineage", *args, "--tracking-uri", store])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    return run


def _hop(lines: list[str], label: str) -> str:
    (line,) = [line for line in lines if line.lstrip("<- ").startswith(f"{label} ")]
    return " ".join(line.split())


def test_part_file_prints_every_hop_back_to_the_dag_runs_and_exits_0(lineage_cli):
    code, lines, err = lineage_cli(f"{OUT}/part-00001-of-00002.parquet")
    assert (code, err) == (0, "")
    assert " ".join(lines[0].split()) == f"predictions {OUT}/part-00001-of-00002.parquet (20 rows)"
    assert [line.split()[1] for line in lines[1:-1]] == [
        "inference", "model", "training", "data", "validation", "quality", "approval", "promotion",
    ]  # fmt: skip
    inference = _hop(lines, "inference")
    assert f"DAG {SCORING[0]} run {SCORING[1]} task score[1] (success), MLflow run " in inference
    assert "score[0]" not in inference
    model = _hop(lines, "model")
    assert model.startswith(
        "<- model churn version 2 (alias champion at inference time; aliases now: champion"
    )
    assert model.endswith("(training)")
    assert _hop(lines, "training") == f"<- training DAG {RETRAIN[0]} run {RETRAIN[1]} task train, code {CODE}"
    assert _hop(lines, "data") == f"<- data {DATA_URI} digest {DIGEST}"
    validation = _hop(lines, "validation")
    assert validation.startswith(f"<- validation suite churn_customers: success (17/17), DAG {INGEST[0]} run")
    assert f"report {REPORT_URI}" in validation
    gate = _hop(lines, "quality gate")
    assert gate.startswith(
        "<- quality gate decision promote: compared with champion v1; accuracy 0.81 >= minimum"
    )
    assert "against champion version 1" in gate
    assert _hop(lines, "approval") == '<- approval approved by admin at 2026-01-01T10:00:00Z ("looks good")'
    promotion = _hop(lines, "promotion")
    assert promotion.startswith("<- promotion champion moved 1 -> 2 at 20")
    assert promotion.endswith(f'by DAG {RETRAIN[0]} run {RETRAIN[1]} ("gate passed")')
    assert lines[-1] == (
        f"DAG runs: {INGEST[0]}/{INGEST[1]} success; {RETRAIN[0]}/{RETRAIN[1]} success; "
        f"{SCORING[0]}/{SCORING[1]} success"
    )


def test_output_folder_sums_the_rows_of_every_shard(lineage_cli):
    code, lines, _ = lineage_cli(f"{OUT}/")
    assert code == 0
    assert " ".join(lines[0].split()) == f"predictions {OUT} (2 part files) (50 rows)"
    assert "tasks score[0] (success), score[1] (success), MLflow runs " in _hop(lines, "inference")


def test_model_version_target_starts_at_the_model_in_every_spelling(lineage_cli):
    outputs = []
    for target in ("models:/churn/2", "churn/2", "churn@champion"):
        code, lines, _ = lineage_cli(target)
        assert code == 0
        outputs.append(lines)
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[0][0].startswith("model ")
    assert "churn version 2 (aliases now: champion)" in outputs[0][0]
    assert outputs[0][-1].startswith(f"DAG runs: {INGEST[0]}/{INGEST[1]} success; {RETRAIN[0]}")


def test_missing_records_print_not_recorded_with_what_was_searched_and_exit_1(lineage_cli):
    code, lines, err = lineage_cli("lonely/1")
    assert (code, err) == (1, "")
    assert "not recorded: lonely version 1 and its run - have no airflow.dag_id" in _hop(lines, "training")
    assert "not recorded: lonely version 1 has no ai.training_data_uri" in _hop(lines, "data")
    assert "not recorded: no quality gate run (ai.job=evaluate) with challenger lonely version 1" in _hop(
        lines, "quality gate"
    )
    assert "not recorded: lonely version 1 has no ai.promoted_at tag" in _hop(lines, "promotion")
    assert lines[-1] == "DAG runs: none recorded"


def test_rejected_challenger_is_a_complete_chain_without_promotion(lineage_cli):
    code, lines, _ = lineage_cli("rejected/1")
    assert code == 0
    assert _hop(lines, "quality gate").startswith(
        "<- quality gate decision reject: accuracy 0.52 < minimum 0.75"
    )
    assert _hop(lines, "promotion") == "<- promotion not promoted (the quality gate rejected version 1)"


def test_validation_of_other_content_at_the_same_uri_breaks_the_chain(lineage_cli):
    code, lines, _ = lineage_cli("changed/1")
    assert code == 1
    validation = _hop(lines, "validation")
    assert validation.startswith("<- validation not recorded: suite churn_customers: success")
    assert (
        f"it validated digest {OLD_DIGEST}, not the training data's: the data changed after validation"
        in (validation)
    )


def test_promotion_without_approval_says_no_approval_step(lineage_cli):
    code, lines, _ = lineage_cli("manual/1")
    assert code == 0
    assert _hop(lines, "approval") == "<- approval no approval step (promoted without a human approval task)"
    assert _hop(lines, "promotion").startswith("<- promotion champion moved none -> 1 at ")


def test_json_output_carries_the_same_chain_with_identifiers(lineage_cli):
    code, lines, _ = lineage_cli(f"{OUT}/part-00000-of-00002.parquet", "--json")
    chain = json.loads("\n".join(lines))
    assert code == 0 and chain["complete"] is True
    by_hop = {hop["hop"]: hop for hop in chain["hops"]}
    assert by_hop["predictions"]["ids"] == {"uri": f"{OUT}/part-00000-of-00002.parquet", "rows": "30"}
    assert by_hop["model"]["ids"]["version"] == "2"
    assert by_hop["data"]["ids"]["digest"] == DIGEST
    assert [run["dag_id"] for run in chain["dag_runs"]] == [INGEST[0], RETRAIN[0], SCORING[0]]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (f"{OUT}/part-00009-of-00010.parquet", "no inference task recorded output s3://bucket/predictions/"),
        ("churn/99", "model 'churn' has no version 99 in the registry"),
        ("nosuchmodel@champion", "model 'nosuchmodel' has no alias 'champion'"),
        ("ftp://host/predictions", "unsupported URI scheme 'ftp'"),
        ("models:/churn", "is not a model version: use models:/<name>/<version>"),
    ],
)
def test_bad_input_exits_2_with_one_line(lineage_cli, target, message):
    code, lines, err = lineage_cli(target)
    assert code == 2 and lines == []
    assert err.count("\n") == 1 and err.startswith("airflow-ai: error: ")
    assert message in err


def test_local_path_and_file_uri_name_the_same_output():
    assert lineage.parse_target("/tmp/out/part-00000-of-00001.parquet") == lineage.parse_target(
        "file:///tmp/out/part-00000-of-00001.parquet"
    )
    assert lineage.parse_target("s3://b/p/") == lineage.OutputTarget("s3://b/p")


def test_dag_run_state_is_unknown_without_an_airflow_database(tmp_path, monkeypatch):
    missing = tmp_path / "airflow.db"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{missing}")
    lookup = lineage.airflow_dag_run_states()
    assert lookup("churn_ingest", "manual__1") is None
    assert not missing.exists()
    assert lineage.Lineage("t", dag_runs=[lineage.DagRunRecord("d", "r", None)]).render() == (
        "DAG runs: d/r state unknown"
    )


def test_dag_run_state_is_read_from_the_airflow_database(airflow_db):
    import pendulum
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    run_id = f"manual__lineage_{os.getpid()}"
    with create_session() as session:
        session.add(
            DagRun(dag_id="lineage_state", run_id=run_id, run_type=DagRunType.MANUAL,
                   state=DagRunState.FAILED, logical_date=pendulum.now("UTC"))
        )  # fmt: skip
    lookup = lineage.airflow_dag_run_states()
    assert lookup("lineage_state", run_id) == "failed"
    assert lookup("lineage_state", "manual__never") == "not in Airflow DB"
