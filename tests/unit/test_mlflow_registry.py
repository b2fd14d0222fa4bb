"""Alias names checked as MLflow checks them, refused at DAG parse when literal; registry errors
classified; the alias compare-and-set on an embedded MLflow SQLite store (no server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider.alias_ledger import (
    MAX_EXPERIMENT_NAME_LENGTH,
    AliasMove,
    check_version_tags,
    move_alias,
)
from airflow_ai_provider.exceptions import (
    AiProviderConfigError,
    ConcurrentPromotionError,
    MlflowUnavailableError,
    ModelReferenceError,
)
from airflow_ai_provider.hooks.mlflow import MlflowHook, answered_error
from airflow_ai_provider.mlflow_registry import alias_version, check_alias_name, pin_alias, pin_model
from airflow_ai_provider.mlflow_runs import RunIdentity, start_task_run
from tests.conftest import REPO_ROOT

NAMES = [
    "champion", "challenger-2", "a_b", "v", "v2x", "x2", "version2", "latest2", "Latest-", "v-1", "vv1",
    "latest", "LATEST", "LaTeSt", "v2", "V10", "v007", "bad alias", "a/b", "a.b", "a@b", "", "ü", "x" * 255,
    "x" * 256,
]  # fmt: skip


def _mlflow_accepts(alias: str) -> bool:
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException:
        return False
    return True


def _accepts(alias: str) -> bool:
    try:
        check_alias_name(alias)
    except AiProviderConfigError:
        return False
    return True


@pytest.mark.parametrize("alias", NAMES, ids=lambda alias: alias[:12] or "empty")
def test_alias_check_agrees_with_mlflows_own_validation(alias):
    assert _accepts(alias) is _mlflow_accepts(alias)


def test_alias_with_a_trailing_newline_is_refused_although_mlflows_regex_lets_it_through():
    assert _mlflow_accepts("champion\n")
    assert not _accepts("champion\n")


@pytest.mark.parametrize("alias", ["latest", "V10", "bad alias", "x" * 300, None, 7])
def test_refused_alias_is_one_line_naming_the_argument_and_never_retried(alias):
    with pytest.raises(AiProviderConfigError) as caught:
        check_alias_name(alias, argument="alias")
    assert isinstance(caught.value, AirflowFailException)
    assert str(caught.value).startswith("alias=") and "\n" not in str(caught.value)
    assert len(str(caught.value)) < 200


def test_oversized_version_tag_is_refused_before_anything_is_written():
    with pytest.raises(AiProviderConfigError, match="shorten the reason"):
        check_version_tags({"ai.promotion_reason": "x" * 100_001})


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("RESOURCE_DOES_NOT_EXIST", ModelReferenceError),
        ("INVALID_PARAMETER_VALUE", AiProviderConfigError),
        ("INTERNAL_ERROR", MlflowUnavailableError),
        ("TEMPORARILY_UNAVAILABLE", MlflowUnavailableError),
    ],
)
def test_registry_errors_are_classified_bad_input_or_retried(code, kind):
    from airflow_ai_provider.hooks.mlflow_entities import MlflowApiError

    answered = MlflowApiError(f"{code}: it failed\nsecond line", code)
    error = answered_error(answered, "doing", "uri")
    assert type(error) is kind
    assert isinstance(error, AirflowFailException) is (kind is not MlflowUnavailableError)
    assert "\n" not in str(error)


def test_claim_names_stay_within_mlflows_limit_and_differ_per_alias():
    long_model = "m" * 400
    first = AliasMove(long_model, "a" * 200, None, "1", "who").claim_name(3)
    second = AliasMove(long_model, "b" * 200, None, "1", "who").claim_name(3)
    assert len(first) <= MAX_EXPERIMENT_NAME_LENGTH and first != second and first.endswith("/3")


# --- parse time ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["latest", "v2", "bad alias", "x" * 250])
def test_literal_bad_alias_is_refused_when_the_operator_is_built(alias):
    from airflow_ai_provider.operators.promotion import PromoteModelOperator

    with pytest.raises(AiProviderConfigError, match="alias="):
        PromoteModelOperator(task_id="promote", model="churn@challenger", alias=alias)


def test_templated_alias_and_model_wait_for_rendering():
    from airflow_ai_provider.operators.promotion import PromoteModelOperator

    op = PromoteModelOperator(task_id="p", model="{{ params.m }}", alias="{{ params.alias }}")
    assert op.alias == "{{ params.alias }}"


@pytest.mark.parametrize(
    "build",
    [
        lambda ops: ops.PromoteModelOperator(task_id="p", model="churn@@x"),
        lambda ops: ops.RollbackModelOperator(task_id="r", promote_task_id="p", model="churn/x/y"),
    ],
    ids=["promote", "rollback"],
)
def test_literal_bad_model_reference_is_refused_when_the_operator_is_built(build):
    from airflow_ai_provider.operators import promotion

    with pytest.raises(AiProviderConfigError, match="is not valid"):
        build(promotion)


def test_dag_file_with_a_reserved_literal_alias_fails_to_parse_with_one_line(tmp_path):
    from airflow.models.dagbag import DagBag

    (tmp_path / "bad_promotion.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk import DAG
            from airflow_ai_provider.operators.promotion import PromoteModelOperator

            with DAG("bad_promotion", schedule=None):
                PromoteModelOperator(task_id="promote", model="churn@challenger", alias="Latest")
            """
        )
    )
    bag = DagBag(dag_folder=str(tmp_path))
    (error,) = bag.import_errors.values()
    assert "alias='Latest' is reserved by MLflow" in error
    assert "bad_promotion" not in bag.dags


def test_building_a_promotion_does_not_import_mlflow():
    code = (
        "import json, sys\n"
        "from airflow_ai_provider.operators.promotion import PromoteModelOperator\n"
        "PromoteModelOperator(task_id='p', model='churn@challenger', alias='champion')\n"
        "print(json.dumps('mlflow' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_promotion_books_its_run_in_the_connections_default_experiment(monkeypatch):
    conn = {"conn_type": "mlflow", "host": "http://mlflow:5000", "extra": {"experiment_name": "team-exp"}}
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(conn))
    assert MlflowHook().task_experiment_name(None, "dag") == "team-exp"
    assert MlflowHook().task_experiment_name("mine", "dag") == "mine"


# --- the compare-and-set on an embedded store ---------------------------------------------------


@pytest.fixture
def hook(tmp_path, monkeypatch) -> MlflowHook:
    """Model 'churn' with versions 1 to 3 in a real MLflow SQLite store; no alias yet."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    hook = MlflowHook()
    with hook.client() as client:
        client.create_registered_model("churn")
        for _ in range(3):
            client.create_model_version("churn", source="file:///nowhere/model")
    return hook


def test_move_then_retry_then_a_stale_racer_on_the_embedded_store(hook, tmp_path):
    first = AliasMove("churn", "champion", None, "1", "dag/run1/promote")
    assert move_alias(hook, first, {"ai.promoted_by_dag_run": "dag/run1"}) is True
    assert move_alias(hook, first, {"ai.promoted_by_dag_run": "dag/run1"}) is False  # a retry
    with pytest.raises(ConcurrentPromotionError, match="points to version 1, but this DAG run saw none"):
        move_alias(hook, AliasMove("churn", "champion", None, "2", "dag/run2/promote"), {"ai.x": "y"})
    with hook.client() as client:
        assert str(client.get_registered_model("churn").aliases["champion"]) == "1"
        assert client.get_registered_model("churn").tags["ai.alias_epoch.champion"] == "1"
        assert "ai.x" not in client.get_model_version("churn", "2").tags
    assert not (tmp_path / "mlruns").exists()  # claims keep their (empty) artifacts beside the store


def test_rollback_to_no_alias_removes_it(hook):
    move_alias(hook, AliasMove("churn", "champion", None, "1", "dag/run1/promote"))
    assert move_alias(hook, AliasMove("churn", "champion", "1", None, "dag/run1/rollback")) is True
    assert alias_version(hook, "churn", "champion") is None


def test_unknown_target_version_is_bad_input_and_claims_nothing(hook):
    with pytest.raises(ModelReferenceError, match="not found"):
        move_alias(hook, AliasMove("churn", "champion", None, "9", "dag/run1/promote"))
    with hook.client() as client:
        assert "ai.alias_epoch.champion" not in client.get_registered_model("churn").tags
        assert (
            client.get_experiment_by_name(AliasMove("churn", "champion", None, "9", "x").claim_name(0))
            is None
        )


def test_an_alias_that_pointed_nowhere_is_pinned_as_none_for_the_whole_dag_run(hook):
    """The gate saw no champion: a champion that appears later in the DAG run is not the one it saw."""
    parent = start_task_run(hook, RunIdentity("dag", "run1", "gate"), "exp").parent_run_id
    assert pin_alias(hook, "churn", "champion", parent) is None
    with hook.client() as client:
        client.set_registered_model_alias("churn", "champion", "1")  # appears mid-run
    assert pin_alias(hook, "churn", "champion", parent) is None
    with pytest.raises(ModelReferenceError, match="had no alias 'champion' when this DAG run first looked"):
        pin_model(hook, "churn@champion", parent)
    later = start_task_run(hook, RunIdentity("dag", "run2", "gate"), "exp").parent_run_id
    assert pin_alias(hook, "churn", "champion", later).version == "1"
    with hook.client() as client:
        client.set_registered_model_alias("churn", "champion", "2")
    assert pin_alias(hook, "churn", "champion", later).version == "1"
    assert pin_model(hook, "churn@champion", later).version == "1"
