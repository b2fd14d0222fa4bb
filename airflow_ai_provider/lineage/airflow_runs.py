"""The states of the Airflow DAG runs a chain passes through, and their Asset events, from this Airflow's metadata database."""

from __future__ import annotations

import os
from collections.abc import Callable

from airflow_ai_provider.runtime.contract import EventKey

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


#: ``(dag_runs, model_name, model_version) -> events``; ``None`` when the database cannot be read.
AssetEventLookup = Callable[[list[tuple[str, str]], str, str], "list[dict] | None"]


def _event(event: object) -> dict:
    """One Asset event as a JSON-friendly dict, with the DAG runs it triggered."""
    extra = event.extra or {}
    asset = event.asset
    task = event.source_task_id or "?"
    if event.source_map_index not in (None, -1):
        task = f"{task}[{event.source_map_index}]"
    return {
        "id": event.id,
        "asset_uri": asset.uri if asset else None,
        "asset_name": asset.name if asset else None,
        "timestamp": event.timestamp.isoformat(),
        "source_dag_id": event.source_dag_id,
        "source_run_id": event.source_run_id,
        "source_task": task,
        "rows": extra.get(EventKey.ROW_COUNT),
        "output_uri": extra.get(EventKey.OUTPUT_URI),
        "triggered": [
            {"dag_id": run.dag_id, "run_id": run.run_id, "state": str(getattr(run.state, "value", run.state))}
            for run in event.created_dagruns
        ],
    }


def airflow_asset_events() -> AssetEventLookup:
    """A lookup of the Asset events DAG runs emitted whose extra names a model version.

    Reads this ``AIRFLOW_HOME``'s metadata DB; any failure to reach it gives ``None`` (unknown), and a
    missing SQLite file is not created.
    """

    def lookup(dag_runs: list[tuple[str, str]], name: str, version: str) -> list[dict] | None:
        try:
            from airflow.configuration import conf
            from airflow.models.asset import AssetEvent
            from airflow.utils.session import create_session
            from sqlalchemy import select

            if _missing_sqlite_file(conf.get("database", "sql_alchemy_conn")):
                return None
            found = []
            with create_session() as session:
                for dag_id, run_id in dag_runs:
                    query = select(AssetEvent).where(
                        AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id
                    )
                    for event in session.scalars(query.order_by(AssetEvent.id)):
                        extra = event.extra or {}
                        if (str(extra.get(EventKey.MODEL_NAME)), str(extra.get(EventKey.MODEL_VERSION))) == (
                            name,
                            version,
                        ):
                            found.append(_event(event))
        except Exception:
            return None
        return found

    return lookup
