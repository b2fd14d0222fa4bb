"""The template kit as one system, through the real Airflow scheduler (``airflow standalone``:
LocalExecutor, SQLite, the templates as DAG folder) and a real ``mlflow server``, on a local data root.

One stack serves both scenarios, in order: files landing start a passing chain by themselves
(ingest -> retrain -> promote -> inference), then new data triggered by hand, whose retraining
fails the quality gate and must stop the chain. The checks are :class:`MainJobChecks`, shared
with the S3 data root (``test_main_job_s3.py``).
"""

from __future__ import annotations

import pytest

from tests._support.stack import run_chain, start_stack, write_sample_data
from tests.e2e.main_job_checks import FIRST_BATCH_ROWS, SCORING_ROWS, MainJobChecks


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("main-job"))
    try:
        write_sample_data(running, rows=FIRST_BATCH_ROWS, scoring_rows=SCORING_ROWS)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def first_chain(stack):
    return run_chain(stack, rows=FIRST_BATCH_ROWS)


class TestMainJobOnLocalFolders(MainJobChecks):
    """Every check of the main job, with the data root a local folder."""
