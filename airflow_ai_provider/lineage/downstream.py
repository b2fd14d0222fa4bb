"""The reverse walk: every inference output, DAG run and Asset event that used one model version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.lineage.airflow_runs import AssetEventLookup, DagRunLookup
from airflow_ai_provider.lineage.records import dag_run_of, run_state, task_name
from airflow_ai_provider.lineage.search import search_runs
from airflow_ai_provider.lineage.targets import LineageInputError, OutputTarget, parse_target
from airflow_ai_provider.lineage.walk import resolve_version
from airflow_ai_provider.runtime.contract import Tag
from airflow_ai_provider.runtime.contract.params import InferParams

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Inference task runs read at most, across every page of the search.
MAX_RUNS = 100_000


@dataclass
class Output:
    """What one inference task run wrote with the model version."""

    dag_id: str | None
    run_id: str | None
    task: str
    state: str
    mlflow_run_id: str
    output_uri: str | None
    files: list[str]
    rows: int
    alias: str | None
    fallback: bool


@dataclass
class Downstream:
    """What used ``name`` version ``version``: outputs newest first, their DAG runs and Asset events.

    ``asset_events`` is ``None`` when Airflow's database was not read (``--no-airflow``) or could not be.
    """

    name: str
    version: str
    outputs: list[Output] = field(default_factory=list)
    dag_runs: list[dict[str, Any]] = field(default_factory=list)
    asset_events: list[dict[str, Any]] | None = None

    #: Always listed in full; the command exits 0 (even when nothing used the version).
    complete = True

    @property
    def rows(self) -> int:
        """Rows written by every output."""
        return sum(output.rows for output in self.outputs)

    def render(self) -> str:
        """The outputs, then one ``DAG runs:`` line, then the Asset events, as text."""
        lines = [
            f"model {self.name} version {self.version}: {len(self.outputs)} inference output(s), "
            f"{self.rows} rows, {len(self.dag_runs)} DAG run(s)"
        ]
        if not self.outputs:
            lines.append(f"  no inference task run ({Tag.JOB}={InferParams.job}) recorded this version")
        for out in self.outputs:
            parts = f"{len(out.files)} part file{'s' * (len(out.files) != 1)}"
            via = f" via {out.alias}" if out.alias else ""
            via += " as fallback" if out.fallback else ""
            lines.append(
                f"  -> output  {out.output_uri or '?'} ({parts}, {out.rows} rows) by DAG {out.dag_id} run "
                f"{out.run_id} task {out.task} ({out.state}){via}, MLflow run {out.mlflow_run_id}"
            )
        runs = "; ".join(
            f"{r['dag_id']}/{r['run_id']} {r['state'] or 'state unknown'}" for r in self.dag_runs
        )
        lines.append(f"DAG runs: {runs or 'none recorded'}")
        if self.asset_events is None:
            lines.append("Asset events: not read (Airflow database not read or not readable)")
            return "\n".join(lines)
        lines.append(f"Asset events: {len(self.asset_events) or 'none recorded'}")
        for event in self.asset_events:
            triggered = "; ".join(f"{r['dag_id']}/{r['run_id']} {r['state']}" for r in event["triggered"])
            lines.append(
                f"  -> event {event['id']}  {event['asset_uri']} at {event['timestamp']} by "
                f"{event['source_dag_id']}/{event['source_run_id']} task {event['source_task']}, "
                f"{event['rows']} rows; triggered: {triggered or 'no DAG run'}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: ``model``, ``rows``, ``outputs``, ``dag_runs``, ``asset_events``."""
        return {
            "model": {"name": self.name, "version": self.version},
            "rows": self.rows,
            "outputs": [vars(output) for output in self.outputs],
            "dag_runs": self.dag_runs,
            "asset_events": self.asset_events,
        }


def _output(run: Any) -> Output:
    """One inference task run as an :class:`Output`."""
    tags = run.data.tags
    try:
        files = [str(uri) for uri in json.loads(tags.get(Tag.OUTPUTS, "[]"))]
    except ValueError:
        files = []
    dag_run = dag_run_of(tags)
    return Output(
        dag_id=dag_run[0] if dag_run else None,
        run_id=dag_run[1] if dag_run else None,
        task=task_name(tags),
        state=run_state(run),
        mlflow_run_id=run.info.run_id,
        output_uri=tags.get(Tag.OUTPUT_URI) or (files[0].rsplit("/", 1)[0] if files else None),
        files=files,
        rows=int(run.data.metrics.get("rows_out", 0)),
        alias=tags.get(Tag.MODEL_ALIAS) or None,
        fallback=tags.get(Tag.FALLBACK_USED) == "true",
    )


def downstream(
    client: MlflowClient, target: str, dag_run_state: DagRunLookup, asset_events: AssetEventLookup | None
) -> Downstream:
    """What used the model version ``target`` (``churn/3``, ``models:/churn/3``, ``churn@champion``).

    Inference task runs are found by their ``ai.model_name`` / ``ai.model_version`` tags in every
    active experiment, every page of results; their DAG runs' states come from ``dag_run_state`` and
    the Asset events those DAG runs emitted naming the version from ``asset_events``.

    :raises LineageInputError: the target is not a model version, or the registry does not have it.
    """
    parsed = parse_target(target)
    if isinstance(parsed, OutputTarget):
        raise LineageInputError(
            f"--downstream takes a model version, not {target!r}: use <name>/<version>, "
            "models:/<name>/<version> or <name>@<alias>"
        )
    version = resolve_version(client, parsed)
    wanted = {Tag.JOB: InferParams.job, Tag.MODEL_NAME: parsed.name, Tag.MODEL_VERSION: version}
    outputs = [_output(run) for run in search_runs(client, wanted, limit=MAX_RUNS)]
    dag_runs: list[tuple[str, str]] = []
    for out in reversed(outputs):  # oldest first
        if out.dag_id and out.run_id and (out.dag_id, out.run_id) not in dag_runs:
            dag_runs.append((out.dag_id, out.run_id))
    found = Downstream(parsed.name, version, outputs)
    found.dag_runs = [{"dag_id": d, "run_id": r, "state": dag_run_state(d, r)} for d, r in dag_runs]
    if asset_events is not None:
        found.asset_events = asset_events(dag_runs, parsed.name, version)
    return found
