"""The hops behind a model version: what a missing, rejected, changed or unapproved record prints.

Walked over the records of :mod:`tests.unit.lineage.chain_records` in a real MLflow SQLite store.
"""

from __future__ import annotations

from tests.unit.lineage.chain_records import OLD_DIGEST, hop


def test_missing_records_print_not_recorded_with_what_was_searched_and_exit_1(lineage_cli):
    code, lines, err = lineage_cli("lonely/1")
    assert (code, err) == (1, "")
    assert "not recorded: lonely version 1 and its run - have no airflow.dag_id" in hop(lines, "training")
    assert "not recorded: lonely version 1 has no ai.training_data_uri" in hop(lines, "data")
    assert "not recorded: no quality gate run (ai.job=evaluate) with challenger lonely version 1" in hop(
        lines, "quality gate"
    )
    assert "not recorded: lonely version 1 has no ai.promoted_at tag" in hop(lines, "promotion")
    assert lines[-1] == "DAG runs: none recorded"


def test_rejected_challenger_is_a_complete_chain_without_promotion(lineage_cli):
    code, lines, _ = lineage_cli("rejected/1")
    assert code == 0
    assert hop(lines, "quality gate").startswith(
        "<- quality gate decision reject: accuracy 0.52 < minimum 0.75"
    )
    assert hop(lines, "promotion") == "<- promotion not promoted (the quality gate rejected version 1)"


def test_validation_of_other_content_at_the_same_uri_breaks_the_chain(lineage_cli):
    code, lines, _ = lineage_cli("changed/1")
    assert code == 1
    validation = hop(lines, "validation")
    assert validation.startswith("<- validation not recorded: suite churn_customers: success")
    assert (
        f"it validated digest {OLD_DIGEST}, not the training data's: the data changed after validation"
        in (validation)
    )


def test_promotion_without_approval_says_no_approval_step(lineage_cli):
    code, lines, _ = lineage_cli("manual/1")
    assert code == 0
    assert hop(lines, "approval") == "<- approval no approval step (promoted without a human approval task)"
    assert hop(lines, "promotion").startswith("<- promotion champion moved none -> 1 at ")
