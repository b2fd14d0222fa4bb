"""The DAG templates with notifications configured as a user configures them: a notifier and
assigned users in the config block, nothing else changed.

``FileNotifier`` is a real Airflow notifier (a ``BaseNotifier`` subclass, rendered with the task
context and called by Airflow like ``SmtpNotifier`` or ``SlackNotifier``); it appends one JSON line
per call to the file named by ``AI_TEST_NOTIFICATIONS``, read when it is called.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.notifier import BaseNotifier

from tests.dags.adapted_template_dags import TEMPLATES, adapted_template

if TYPE_CHECKING:
    from airflow.sdk import Context


class FileNotifier(BaseNotifier):
    """Append ``{"notifier", "message", "dag_id", "task_id", "map_index", "run_id", "try_number",
    "exception"}`` as one JSON line to the file ``$AI_TEST_NOTIFICATIONS``.

    :param name: which notifier this is, recorded in each line.
    :param message: text rendered with the task context, as a mail or chat notifier renders its own.
        (templated)
    """

    template_fields = ("message",)

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__()
        self.name = name
        self.message = message

    def notify(self, context: Context) -> None:
        """Record the call and the context it came with."""
        ti = context["ti"]
        record: dict[str, Any] = {
            "notifier": self.name,
            "message": self.message,
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "run_id": context["run_id"],
            "try_number": ti.try_number,
            "exception": str(context["exception"]) if context.get("exception") else None,
        }
        with Path(os.environ["AI_TEST_NOTIFICATIONS"]).open("a") as file:
            file.write(json.dumps(record) + "\n")


def notifications(path: Path) -> list[dict[str, Any]]:
    """The calls ``FileNotifier`` recorded in ``path``, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


REVIEWER = {"id": "alice", "name": "Alice"}
"""The one user assigned to answer the reviews and approvals below."""

FAILURE = 'FileNotifier("failure", "{{ ti.task_id }} failed in {{ dag.dag_id }}")'

NOTIFIED_BATCH_INFERENCE = {
    "DAG_ID": '"notified_batch_inference"',
    "DATA_ROOT": 'os.environ["AI_TEMPLATES_DATA_ROOT"] + "/notified"',
    "MODEL_NAME": '"notified_churn"',
    "SCORING_DATA": 'Asset(name="notified_scoring_data", uri=data_uri(DATA_ROOT, "scoring/customers"))',
    "PREDICTIONS": 'Asset(name="notified_predictions", uri=data_uri(DATA_ROOT, "predictions"))',
    "INFERENCE_POOL": '"default_pool"',
    "REVIEW_NOTIFIERS": '[FileNotifier("review", "{{ ti.task_id }} of {{ run_id }} waits for an answer")]',
    "REVIEW_ASSIGNED_USERS": repr([REVIEWER]),
    "ON_FAILURE_CALLBACK": FAILURE,
}
"""The batch-inference template with a review notifier, one assigned reviewer and a failure notifier."""

notified_batch_inference = partial(
    adapted_template, "churn_batch_inference", NOTIFIED_BATCH_INFERENCE, {"FileNotifier": FileNotifier}
)

notified_batch_inference()

NOTIFIED_INGEST = {
    "DAG_ID": '"notified_ingest"',
    "DATA_ROOT": 'os.environ["AI_TEMPLATES_DATA_ROOT"] + "/notified"',
    "VALIDATED_DATA": 'Asset(name="notified_validated_data", uri=data_uri(DATA_ROOT, "raw", "customers"))',
    "LANDED_NAME": '"notified_landed_customers"',
    "SUITE": repr(str(TEMPLATES / "include" / "churn_expectations.json")),
    "ON_FAILURE_CALLBACK": FAILURE,
}
"""The ingest template with a failure notifier."""

notified_ingest = partial(adapted_template, "churn_ingest", NOTIFIED_INGEST, {"FileNotifier": FileNotifier})

notified_ingest()

NOTIFIED_RETRAIN = {
    "DAG_ID": '"notified_retrain"',
    "APPROVAL_NOTIFIERS": '[FileNotifier("approval")]',
    "APPROVAL_ASSIGNED_USERS": repr([REVIEWER]),
    "ON_FAILURE_CALLBACK": f"[{FAILURE}]",
}
"""The retraining template with an approval notifier, one assigned approver and a failure notifier
(as a list)."""

notified_retrain = partial(
    adapted_template, "churn_retrain", NOTIFIED_RETRAIN, {"FileNotifier": FileNotifier}
)
