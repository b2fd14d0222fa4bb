"""Walk the lineage of predictions or of a model version through MLflow and Airflow records."""

from __future__ import annotations

from airflow_ai_provider.lineage.airflow_runs import (
    AssetEventLookup,
    DagRunLookup,
    airflow_asset_events,
    airflow_dag_run_states,
)
from airflow_ai_provider.lineage.downstream import Downstream, Output, downstream
from airflow_ai_provider.lineage.render import DagRunRecord, Hop, Lineage
from airflow_ai_provider.lineage.targets import LineageInputError, OutputTarget, parse_target
from airflow_ai_provider.lineage.walk import trace

__all__ = [
    "AssetEventLookup",
    "Downstream",
    "Output",
    "airflow_asset_events",
    "downstream",
    "DagRunLookup",
    "DagRunRecord",
    "Hop",
    "Lineage",
    "LineageInputError",
    "OutputTarget",
    "airflow_dag_run_states",
    "parse_target",
    "trace",
]
