"""``airflow-ai lineage`` from predictions or a model version: the whole chain, its forms, bad targets.

Walked over the records of :mod:`tests.unit.lineage.chain_records` in a real MLflow SQLite store.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.lineage.chain_records import (
    CODE,
    DATA_URI,
    DIGEST,
    FALLBACK_OUT,
    FALLBACK_REASON,
    INGEST,
    MOVED_OUT,
    OUT,
    REPORT_URI,
    RETRAIN,
    SCORING,
    hop,
)


def test_part_file_prints_every_hop_back_to_the_dag_runs_and_exits_0(lineage_cli):
    code, lines, err = lineage_cli(f"{OUT}/part-00001-of-00002.parquet")
    assert (code, err) == (0, "")
    assert " ".join(lines[0].split()) == f"predictions {OUT}/part-00001-of-00002.parquet (20 rows)"
    assert [line.split()[1] for line in lines[1:-1]] == [
        "inference", "model", "training", "data", "validation", "quality", "approval", "promotion",
    ]  # fmt: skip
    inference = hop(lines, "inference")
    assert f"DAG {SCORING[0]} run {SCORING[1]} task score[1] (success), MLflow run " in inference
    assert "score[0]" not in inference
    model = hop(lines, "model")
    assert model.startswith(
        "<- model churn version 2 (used by the inference; alias champion pointed to version 2 at "
        "inference time (pinned for its DAG run); aliases now: champion"
    )
    assert "has moved since" not in model
    assert model.endswith("(training)")
    assert hop(lines, "training") == f"<- training DAG {RETRAIN[0]} run {RETRAIN[1]} task train, code {CODE}"
    assert hop(lines, "data") == f"<- data {DATA_URI} digest {DIGEST}"
    validation = hop(lines, "validation")
    assert validation.startswith(f"<- validation suite churn_customers: success (17/17), DAG {INGEST[0]} run")
    assert f"report {REPORT_URI}" in validation
    gate = hop(lines, "quality gate")
    assert gate.startswith(
        "<- quality gate decision promote: compared with champion v1; accuracy 0.81 >= minimum"
    )
    assert "against champion version 1" in gate
    assert hop(lines, "approval") == '<- approval approved by admin at 2026-01-01T10:00:00Z ("looks good")'
    promotion = hop(lines, "promotion")
    assert promotion.startswith("<- promotion champion moved 1 -> 2 at 20")
    assert promotion.endswith(f'by DAG {RETRAIN[0]} run {RETRAIN[1]} ("gate passed")')
    assert lines[-1] == (
        f"DAG runs: {INGEST[0]}/{INGEST[1]} success; {RETRAIN[0]}/{RETRAIN[1]} success; "
        f"{SCORING[0]}/{SCORING[1]} success"
    )


def test_predictions_name_the_version_the_alias_pointed_to_at_inference_not_where_it_points_now(
    lineage_cli,
):
    """Scored through ``moved@champion`` at version 1; champion was moved to version 2 afterwards."""
    code, lines, _ = lineage_cli(f"{MOVED_OUT}/part-00000-of-00001.parquet")
    assert code == 1  # a version registered by hand: nothing recorded behind it
    model = hop(lines, "model")
    assert model.startswith(
        "<- model moved version 1 (used by the inference; alias champion pointed to version 1 at "
        "inference time (pinned for its DAG run); champion has moved since; aliases now: none)"
    )
    assert "version 2" not in model
    code, lines, _ = lineage_cli(f"{MOVED_OUT}/part-00000-of-00001.parquet", "--json")
    ids = {hop["hop"]: hop for hop in json.loads("\n".join(lines))["hops"]}["model"]["ids"]
    assert (ids["version"], ids["alias_at_inference"], ids["alias_version_at_inference"]) == (
        "1",
        "champion",
        "1",
    )


def test_predictions_scored_by_the_fallback_say_so_and_why(lineage_cli):
    _, lines, _ = lineage_cli(f"{FALLBACK_OUT}/part-00000-of-00001.parquet")
    model = hop(lines, "model")
    assert model.startswith(
        "<- model fell_back version 1 (used by the inference as its fallback model, because the "
        f"intended one failed: {FALLBACK_REASON}; alias champion_previous pointed to version 1 at "
        "inference time (pinned for its DAG run); aliases now: champion_previous)"
    )


def test_output_folder_sums_the_rows_of_every_shard(lineage_cli):
    code, lines, _ = lineage_cli(f"{OUT}/")
    assert code == 0
    assert " ".join(lines[0].split()) == f"predictions {OUT} (2 part files) (50 rows)"
    assert "tasks score[0] (success), score[1] (success), MLflow runs " in hop(lines, "inference")


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
