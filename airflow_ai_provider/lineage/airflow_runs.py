"""The states of the Airflow DAG runs a chain passes through, from this Airflow's metadata database."""

from __future__ import annotations

import os
from collections.abc import Callable

#: ``(dag_id, run_id) -> state``; ``None`` when the state cannot be known.
DagRunLookup = Callable[[str, str], "str | None"]

NOT_IN_DATABASE = "not in Airflow DB"


def _missing_sqlite_file(url: str) -> bool:
    """Whether ``url`` is a SQLite database whose file does not exist (and must not be created)."""
    return url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///").split("?")[0])


def airflow_dag_run_states() -> DagRunLookup:
    """A lookup of DAG-run states in the Airflow metadata DB of this ``AIRFLOW_HOME``.

    Any failure to reach it (no database yet, no Airflow configured, a DB error) makes every state
    ``None`` (unknown) instead of an error; a missing SQLite file is not created.
    """
    broken = False

    def lookup(dag_id: str, run_id: str) -> str | None:
        nonlocal broken
        if broken:
            return None
        try:
            from airflow.configuration import conf
            from airflow.models.dagrun import DagRun
            from airflow.utils.session import create_session

            if _missing_sqlite_file(conf.get("database", "sql_alchemy_conn")):
                broken = True
                return None
            with create_session() as session:
                states = [run.state for run in DagRun.find(dag_id=dag_id, run_id=run_id, session=session)]
        except Exception:
            broken = True
            return None
        if not states or states[0] is None:
            return NOT_IN_DATABASE
        return str(getattr(states[0], "value", states[0]))

    return lookup
