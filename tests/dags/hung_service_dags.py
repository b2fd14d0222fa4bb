"""Batch-inference DAGs whose MLflow server the test stops (SIGSTOP) before or during the first try.

The retry callback records when the first try ended and resumes the server (SIGCONT of the process
group in ``AI_TEST_RESUME_PGID``), so the second try finds it answering again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_ai_provider.operators.inference import BatchInferenceOperator


def resume_mlflow_server(context: Any) -> None:
    """Log the failed try (number, state, start, end, error) and let the stopped server run again.

    Airflow calls it only for a try that ends ``up_for_retry``.
    """
    ti = context["ti"]
    started = getattr(ti, "start_date", None)
    entry = {
        "try_number": ti.try_number,
        "state": str(getattr(ti.state, "value", ti.state)),
        "started": started.timestamp() if started else None,
        "ended": time.time(),
        "error": str(context.get("exception")),
    }
    with open(os.environ["AI_TEST_RETRY_LOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    os.killpg(int(os.environ["AI_TEST_RESUME_PGID"]), signal.SIGCONT)


def _hung_mlflow_scoring(dag_id: str, python: str | None = None) -> DAG:
    """One local batch-inference task, retried once; the retry callback resumes the server.

    :param dag_id: the DAG's id.
    :param python: the interpreter that runs the runtime (the worker's own when ``None``).
    """
    data = os.environ.get("AI_TEST_DATA", "/tmp")
    with DAG(dag_id, schedule=None) as dag:
        BatchInferenceOperator(
            task_id="score",
            model="churn@champion",
            input_uri=f"{data}/scoring",
            output_uri=f"{data}/predictions/{{{{ run_id }}}}",
            id_columns=["customer_id"],
            execution_mode="local",
            python=python,
            retries=1,
            retry_delay=timedelta(seconds=0),
            on_retry_callback=resume_mlflow_server,
        )
    return dag


def hung_mlflow_inference() -> DAG:
    """The server is stopped before the first try starts."""
    return _hung_mlflow_scoring("hung_mlflow_inference")


def mlflow_hangs_mid_try() -> DAG:
    """The same task, run through ``AI_TEST_FAKE_PYTHON``: an interpreter that stops the server
    after the task booked its MLflow run and before the runtime starts."""
    return _hung_mlflow_scoring("mlflow_hangs_mid_try", python=os.environ.get("AI_TEST_FAKE_PYTHON"))


hung_mlflow_inference()
mlflow_hangs_mid_try()
