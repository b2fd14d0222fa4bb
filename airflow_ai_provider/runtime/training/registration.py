"""Registering a trained model idempotently: training key tag, find or create the version, wait, alias last.

A version carrying the task's training key as tag :data:`TRAINING_KEY_TAG` means an earlier try got
as far as registering: a retry finds it (:func:`find_version`) and finishes what that try started
(:func:`reuse`) instead of training again. A fresh registration (:func:`register`) creates the
version with lineage tags and the model card as description, waits until it is ``READY`` and only
then points the alias at it; a failure before the version is created registers nothing.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.runtime.contract import Tag
from airflow_ai_provider.runtime.contract.errors import JobServiceError
from airflow_ai_provider.runtime.tracking import error_code, mlflow_errors
from airflow_ai_provider.runtime.training.model_card import MODEL_CARD_ARTIFACT, ModelCard

if TYPE_CHECKING:
    from airflow_ai_provider.runtime.contract.params import TrainParams

#: What a successful training wrote, read back when a retry reuses the version.
SUMMARY_ARTIFACT = "training_summary.json"
TRAINING_KEY_TAG = "ai.training_key"


def register(
    client: Any,
    params: TrainParams,
    model_info: Any,
    run_id: str,
    card: ModelCard,
    summary: dict[str, Any],
    tracking_uri: str,
) -> str:
    """Log the card and the summary, register the logged model as a new version, wait until it is
    ``READY``, then point the alias at it; return the version number."""
    with mlflow_errors(f"cannot register model {params.model_name!r}", tracking_uri):
        expected = _next_version(client, params.model_name)
        card = replace(card, version=expected)
        client.log_text(run_id, card.to_markdown(), MODEL_CARD_ARTIFACT)
        client.log_dict(run_id, summary, SUMMARY_ARTIFACT)
        version = _create_version(client, params, model_info, run_id, card, summary)
        if str(version.version) != expected:  # another registration took the number meanwhile
            card = replace(card, version=str(version.version))
            client.update_model_version(params.model_name, version.version, description=card.description())
            client.log_text(run_id, card.to_markdown(), MODEL_CARD_ARTIFACT)
        client.set_registered_model_alias(params.model_name, params.alias, version.version)
    return str(version.version)


def find_version(client: Any, params: TrainParams, tracking_uri: str) -> Any | None:
    """The version an earlier try of this training task registered, if any."""
    from mlflow.exceptions import MlflowException

    key = params.training_key or ""
    with mlflow_errors(f"cannot search versions of model {params.model_name!r}", tracking_uri):
        try:
            if "'" in key:  # not expressible in a filter string: filter here
                found = client.search_model_versions(f"name = '{params.model_name}'")
            else:
                found = client.search_model_versions(
                    f"name = '{params.model_name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'"
                )
        except MlflowException as err:
            if error_code(err) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    mine = [version for version in found if version.tags.get(TRAINING_KEY_TAG) == key]
    return min(mine, key=lambda version: int(version.version)) if mine else None


def reuse(
    client: Any, params: TrainParams, version: Any, tracking_uri: str, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """Finish what an earlier try started: wait for the version and set the alias; return the ready
    version and the summary that try logged."""
    with mlflow_errors(f"cannot reuse model {params.model_name!r} version {version.version}", tracking_uri):
        version = _wait_ready(client, params.model_name, str(version.version), params.registration_timeout_s)
        summary = _load_summary(client, version)
        model = client.get_registered_model(params.model_name)
        if str(model.aliases.get(params.alias, "")) != str(version.version):
            client.set_registered_model_alias(params.model_name, params.alias, version.version)
            log(f"alias {params.alias!r} of {params.model_name} now points to version {version.version}")
    return version, summary


def _lineage(params: TrainParams) -> dict[str, str]:
    return {
        Tag.DAG_ID: params.dag_id or "",
        Tag.RUN_ID: params.dag_run_id or "",
        Tag.TASK_ID: params.task_id or "",
        TRAINING_KEY_TAG: params.training_key or "",
    }


def _version_tags(params: TrainParams, run_id: str, summary: dict[str, Any]) -> dict[str, str]:
    """Lineage, image, training data and code of the version (empty values left out)."""
    from airflow_ai_provider.runtime.profile import PROFILE_TAG, profile_uri

    tags = {
        **_lineage(params),
        Tag.IMAGE: params.image or "",
        Tag.TRAINING_DATA_DIGEST: summary["training_data_digest"],
        Tag.TRAINING_DATA_URI: summary["training_data_uri"],
        Tag.CODE_REFERENCE: params.training_function,
        PROFILE_TAG: profile_uri(run_id),
    }
    return {key: value for key, value in tags.items() if value}


def _next_version(client: Any, name: str) -> str:
    """The version number the registry will most likely give the next version of ``name``."""
    from mlflow.exceptions import MlflowException

    try:
        latest = client.search_model_versions(
            f"name = '{name}'", max_results=1, order_by=["version_number DESC"]
        )
    except MlflowException as err:
        if error_code(err) == "RESOURCE_DOES_NOT_EXIST":
            return "1"
        raise
    return str(int(latest[0].version) + 1) if latest else "1"


def _create_version(
    client: Any, params: TrainParams, model_info: Any, run_id: str, card: ModelCard, summary: dict[str, Any]
) -> Any:
    """Create the registered model if needed, then the version with its tags and description; wait
    until it is ``READY``."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(params.model_name)
    except MlflowException as err:
        if error_code(err) != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        params.model_name,
        source=model_info.model_uri,
        run_id=run_id,
        tags=_version_tags(params, run_id, summary),
        description=card.description(),
        model_id=model_info.model_id,
        await_creation_for=params.registration_timeout_s,
    )
    return _wait_ready(client, params.model_name, str(version.version), params.registration_timeout_s)


def _wait_ready(client: Any, name: str, version: str, timeout_s: int) -> Any:
    """The version once it is ``READY``; retryable when it failed or is still pending after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = client.get_model_version(name, version)
        if current.status == "READY":
            return current
        if current.status == "FAILED_REGISTRATION":
            raise JobServiceError(
                f"model {name!r} version {version} failed registration ({current.status_message or 'no message'}): "
                "delete that version and retry the task"
            )
        if time.monotonic() > deadline:
            raise JobServiceError(
                f"model {name!r} version {version} is still {current.status} after {timeout_s}s: retry the task"
            )
        time.sleep(1)


def _load_summary(client: Any, version: Any) -> dict[str, Any]:
    """The summary the version's training run logged; without one, what the version's tags say."""
    with tempfile.TemporaryDirectory(prefix="ai-train-") as scratch:
        try:
            path = client.download_artifacts(version.run_id, SUMMARY_ARTIFACT, scratch)
        except Exception:  # no summary (registered by other means): the version's own tags
            tags = version.tags
            return {
                "metrics": {},
                "rows": 0,
                "features": [],
                "label": "",
                "training_data_digest": tags.get(Tag.TRAINING_DATA_DIGEST, ""),
                "training_data_uri": tags.get(Tag.TRAINING_DATA_URI, ""),
            }
        with open(path) as handle:
            return json.load(handle)
