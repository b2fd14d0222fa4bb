"""The lineage tests' MLflow store of recorded histories, and ``airflow-ai lineage`` run in-process."""

from __future__ import annotations

import pytest

from airflow_ai_provider import cli, lineage
from airflow_ai_provider.hooks.mlflow import MlflowHook
from tests.unit.lineage.chain_records import STATES, record_histories


@pytest.fixture(scope="package")
def store(tmp_path_factory) -> str:
    """Records of several models' histories in one SQLite store; see each test for its model."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        record_histories(MlflowHook())
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
