"""DAG-run states from the Airflow metadata database, and ``state unknown`` without one."""

from __future__ import annotations

import os

from airflow_ai_provider.lineage.airflow_runs import airflow_dag_run_states
from airflow_ai_provider.lineage.render import DagRunRecord, Lineage


def test_dag_run_state_is_unknown_without_an_airflow_database(tmp_path, monkeypatch):
    missing = tmp_path / "airflow.db"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{missing}")
    lookup = airflow_dag_run_states()
    assert lookup("churn_ingest", "manual__1") is None
    assert not missing.exists()
    assert Lineage("t", dag_runs=[DagRunRecord("d", "r", None)]).render() == ("DAG runs: d/r state unknown")


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
    lookup = airflow_dag_run_states()
    assert lookup("lineage_state", run_id) == "failed"
    assert lookup("lineage_state", "manual__never") == "not in Airflow DB"
