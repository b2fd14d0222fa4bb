"""The main job, timed: phases, DAG runs, and the orchestration overhead of each AI task.

Runs the main job of ``tests/_support/stack.py`` once (synthetic data -> MLflow + ``airflow
standalone`` -> files landing start ``churn_ingest``, followed through the Asset-triggered
``churn_retrain`` and ``churn_batch_inference`` runs) in local execution mode, then reads from
Airflow's REST API:

- each DAG run's ``start_date``/``end_date``, and the gap from one run's end to the next run's start
  (the Asset trigger);
- each task instance's ``start_date``/``end_date``. For an AI task, the runtime's own ``timings``
  (``started_at``/``ended_at``, epoch seconds, in the XCom ``return_value``) split the task into
  *task start -> runtime start* (worker start-up, MLflow run booking, model pinning, spawning the
  interpreter and importing the runtime), the runtime itself, and *runtime end -> task end*
  (process exit, recording metrics and the result in MLflow, closing the run, pushing XCom).
  The plain ``@task`` functions of the same runs are the baseline: their whole duration is what
  Airflow costs for a task that does almost nothing.

The task logs add a finer split where their lines are found (Airflow's ``Worker startup parse
complete`` with ``dag_file_parse_ms``, the operator's ``Job spec:`` line just before the runtime is
spawned, and ``Runtime exited``).

The baseline of the chain times is a second fresh deployment in the same run with the warm runtime
off (``AIRFLOW__AI_PROVIDER__WARM_RUNTIME=False``: every job a new interpreter); ``--no-baseline``
skips it.

Run: ``.venv/bin/python benchmarks/bench_main_job.py`` (about 10 minutes; state in
``benchmarks/.work/main_job``, removed at the start of each deployment).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench_docs import machine_line, replace_section  # noqa: E402

from tests._support.stack import DAGS, run_chain, start_stack, write_sample_data, xcom  # noqa: E402

HOME = Path(__file__).resolve().parent / ".work" / "main_job"
AI_OPERATORS = {
    "DataValidationOperator",
    "RetrainModelOperator",
    "QualityGateOperator",
    "BatchInferenceOperator",
    "DriftDetectionOperator",
}
PLAIN_TASK_OPERATORS = {"_PythonDecoratedOperator", "PythonOperator"}
#: AI tasks that run no runtime (MLflow bookkeeping in the worker only), reported by whole duration.
WORKER_ONLY_AI_OPERATORS = {"PromoteModelOperator", "RollbackModelOperator"}
PREDICTING_TASK = ("churn_batch_inference", "score")


def _ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def _label(ti: dict[str, Any]) -> str:
    return ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"


def _log_marks(home: Path, dag_id: str, run_id: str, ti: dict[str, Any]) -> dict[str, float]:
    """Epoch times of a few known lines of the task's log (empty when the log is not found)."""
    folder = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={ti['task_id']}"
    if ti["map_index"] >= 0:
        folder /= f"map_index={ti['map_index']}"
    path = folder / f"attempt={ti['try_number']}.log"
    marks: dict[str, float] = {}
    if not path.exists():
        return marks
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event, stamp = str(record.get("event", "")), _ts(record.get("timestamp"))
        if stamp is None:
            continue
        marks.setdefault("first_line", stamp)
        if event == "Worker startup parse complete":
            marks["parse_done"] = stamp
            marks["parse_ms"] = float(record.get("dag_file_parse_ms", 0))
        elif event.startswith("Job spec:"):
            marks["spawn"] = stamp
        elif event.startswith("Runtime exited"):
            marks["exited"] = stamp
    return marks


def _task_rows(stack: Any, report: Any) -> list[dict[str, Any]]:
    rows = []
    for dag_id, run in report.runs.items():
        run_id = run["dag_run_id"]
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        for ti in stack.airflow.api("GET", path)["task_instances"]:
            start, end = _ts(ti.get("start_date")), _ts(ti.get("end_date"))
            if start is None or end is None or ti["state"] != "success":
                continue
            row: dict[str, Any] = {
                "dag": dag_id,
                "task": _label(ti),
                "operator": ti.get("operator") or "",
                "duration": end - start,
                "end": end,
                "queued": start - _ts(ti["queued_when"]) if ti.get("queued_when") else None,
                "marks": _log_marks(stack.airflow.home, dag_id, run_id, ti),
            }
            if row["operator"] in AI_OPERATORS:
                result = xcom(stack, dag_id, run_id, ti["task_id"], ti["map_index"]) or {}
                timings = result.get("timings", {})
                started, ended = timings.get("started_at"), timings.get("ended_at")
                if started is not None and ended is not None:
                    row.update(pre=started - start, runtime=ended - started, post=end - ended)
                    marks = row["marks"]
                    if "spawn" in marks and "parse_done" in marks:
                        row["booking"] = marks["spawn"] - marks["parse_done"]
                    if "spawn" in marks:
                        row["spawn_to_runtime"] = started - marks["spawn"]
                    if "exited" in marks:
                        row["runtime_to_exit"] = marks["exited"] - ended
                        row["exit_to_end"] = end - marks["exited"]
            if "first_line" in row["marks"]:
                row["startup"] = row["marks"]["first_line"] - start
            rows.append(row)
    return rows


def _chain_marks(stack: Any, report: Any, rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """When the chain was triggered (the watcher's Asset event that started the ingest run), when the
    landing ended, and when the predictions were written (the last ``score`` shard ended)."""
    ingest = report.runs["churn_ingest"]
    path = f"/dags/churn_ingest/dagRuns/{ingest['dag_run_id']}/upstreamAssetEvents"
    events = stack.airflow.api("GET", path).get("asset_events", [])
    stamps = [_ts(event.get("timestamp")) for event in events]
    trigger = min((s for s in stamps if s is not None), default=_ts(ingest.get("queued_at")))
    scored = [row["end"] for row in rows if (row["dag"], row["task"].split("[")[0]) == PREDICTING_TASK]
    return {"trigger": trigger, "predictions": max(scored, default=None)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _to_predictions(chains: list[dict[str, float | None]]) -> list[float]:
    """Seconds from trigger to predictions of each chain that has both."""
    return [m["predictions"] - m["trigger"] for m in chains if m["trigger"] and m["predictions"]]


def _orchestration(rows: list[dict[str, Any]]) -> float:
    """Median pre + post of the AI tasks that ran a runtime."""
    return statistics.median(row["pre"] + row["post"] for row in rows if "pre" in row and "post" in row)


def _render(
    phases: dict[str, float],
    reports: list[Any],
    chains: list[dict[str, float | None]],
    rows: list[dict[str, Any]],
    command: str,
) -> str:
    out = [
        machine_line(),
        "",
        f"Command: `{command}` (Airflow 3 `airflow standalone` with LocalExecutor and SQLite, "
        "`AIRFLOW__CORE__PARALLELISM=4`, a local `mlflow server`, local execution mode, local folders "
        f"for data; {len(reports)} chains one after the other in the same deployment, the first with a "
        "cold model cache). Load on this 2-core machine during the run: "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min average at the end).",
        "",
        "| phase | wall time (s) |",
        "| --- | ---: |",
        *(f"| {name} | {seconds:.1f} |" for name, seconds in phases.items()),
        "",
        "*Trigger* is the watcher's Asset event that started the ingest run (files count as landed once "
        "unchanged for `AI_TEMPLATES_SETTLE_SECONDS`, 10 s here); *predictions* is the end of the last "
        "`score` shard, whose output the review and publish steps then route. The review step waits "
        "for a human (`AI_TEMPLATES_REVIEW_TIMEOUT_MIN`, 15 s here) before the last run ends.",
        "",
        "| chain | trigger -> predictions (s) | trigger -> last DAG run finished (s) |",
        "| --- | ---: | ---: |",
    ]
    for number, (report, marks) in enumerate(zip(reports, chains, strict=True), start=1):
        trigger, predictions = marks["trigger"], marks["predictions"]
        last_end = max((_ts(run.get("end_date")) or 0 for run in report.runs.values()), default=None)
        to_predictions = predictions - trigger if trigger and predictions else None
        to_end = last_end - trigger if trigger and last_end else None
        out.append(f"| {number} | {_fmt(to_predictions)} | {_fmt(to_end)} |")
    out += [
        "",
        "| chain | DAG run | state | start minus previous run's end (s) | run wall time (s) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for number, report in enumerate(reports, start=1):
        previous_end = None
        for dag_id, run in report.runs.items():
            start, end = _ts(run.get("start_date")), _ts(run.get("end_date"))
            gap = start - previous_end if start is not None and previous_end is not None else None
            wall = end - start if start is not None and end is not None else None
            out.append(f"| {number} | {dag_id} | {run['state']} | {_fmt(gap)} | {_fmt(wall)} |")
            previous_end = end
    ai_rows = [row for row in rows if row["operator"] in AI_OPERATORS]
    plain_rows = [row for row in rows if row["operator"] in PLAIN_TASK_OPERATORS]
    out += [
        "",
        "Per AI task (local mode), seconds. *pre* = task start -> runtime start, split into: *start-up* "
        "(task `start_date` -> first line of the task log), *worker parse* (Airflow's own "
        "`dag_file_parse_ms`), *MLflow + spec* (parse done -> the operator's `Job spec:` line: booking "
        "the task's MLflow run, pinning the model, building the spec) and *spawn* (`Job spec:` line -> "
        "the runtime's `started_at`: interpreter start and runtime imports); the small rest is log "
        "grouping. *post* = runtime end -> task end, split into *exit* (runtime `ended_at` -> the "
        "operator's `Runtime exited` line: writing the result file and interpreter shutdown) and "
        "*record* (`Runtime exited` -> task `end_date`: metrics and result into MLflow, closing the "
        "run, XCom, task state).",
        "",
        "| chain | DAG | task | task duration | pre | start-up | worker parse | MLflow + spec | spawn "
        "| runtime | post | exit | record |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ai_rows:
        parse = row["marks"].get("parse_ms")
        cells = [
            row["duration"],
            row.get("pre"),
            row.get("startup"),
            parse / 1000 if parse is not None else None,
            row.get("booking"),
            row.get("spawn_to_runtime"),
            row.get("runtime"),
            row.get("post"),
            row.get("runtime_to_exit"),
            row.get("exit_to_end"),
        ]
        out.append(_task_line(row, cells))
    out += [
        "",
        "Baseline: the plain `@task` functions of the same runs; their whole duration is Airflow's own "
        "cost for a task (start-up and worker parse as above, then the function and the task state).",
        "",
        "| chain | DAG | task | task duration | start-up | worker parse |",
        "| ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for row in plain_rows:
        parse = row["marks"].get("parse_ms")
        cells = [row["duration"], row.get("startup"), parse / 1000 if parse is not None else None]
        out.append(_task_line(row, cells))
    pre = [row["pre"] for row in ai_rows if "pre" in row]
    post = [row["post"] for row in ai_rows if "post" in row]
    plain = [row["duration"] for row in plain_rows]
    if pre and post and plain:
        overhead = _orchestration(rows)
        out += [
            "",
            f"Median over {len(pre)} AI tasks: pre {statistics.median(pre):.2f} s + post "
            f"{statistics.median(post):.2f} s = {overhead:.2f} s of orchestration per AI task, against a "
            f"median plain `@task` duration of {statistics.median(plain):.2f} s ({len(plain)} tasks): "
            f"the provider adds {overhead - statistics.median(plain):+.2f} s per task to what Airflow "
            "itself costs.",
        ]
        parts = {
            "MLflow + spec": "booking",
            "spawn": "spawn_to_runtime",
            "exit": "runtime_to_exit",
            "record": "exit_to_end",
        }
        medians = [
            f"{label} {statistics.median(values):.2f} s"
            for label, key in parts.items()
            if (values := [row[key] for row in ai_rows if key in row])
        ]
        if medians:
            out[-1] += f" Medians of the provider's parts: {', '.join(medians)}."
        verdict = "met" if overhead - statistics.median(plain) <= 1.5 else "not met"
        out[-1] += f" Target: at most +1.5 s per AI task ({verdict})."
    worker_only = [row for row in rows if row["operator"] in WORKER_ONLY_AI_OPERATORS]
    if worker_only and plain:
        durations = ", ".join(f"{row['task']} {row['duration']:.2f} s" for row in worker_only)
        out[-1] += (
            f" The promotion tasks run no runtime (alias compare-and-set and tags from the worker): "
            f"{durations}, against the plain median {statistics.median(plain):.2f} s."
        )
    predictions = _to_predictions(chains)
    if predictions:
        verdict = "met" if max(predictions) <= 40 else "not met"
        out += [
            "",
            f"Chain from trigger to predictions: {', '.join(f'{x:.1f} s' for x in predictions)} "
            f"(target: at most 40 s, {verdict}).",
        ]
    out += [
        "",
        "A shared 2-core machine (load above); the two `score` shards run at the same time and compete "
        "for the cores, so single figures move by a second or more between runs.",
    ]
    return "\n".join(out)


def _task_line(row: dict[str, Any], cells: list[float | None]) -> str:
    return f"| {row['chain']} | {row['dag']} | {row['task']} | " + " | ".join(_fmt(c) for c in cells) + " |"


@dataclass
class Deployment:
    """What one deployment's chains produced."""

    phases: dict[str, float]
    reports: list[Any]
    chains: list[dict[str, float | None]]
    rows: list[dict[str, Any]]

    @property
    def complete(self) -> bool:
        return bool(self.reports) and all(
            len(report.runs) == len(DAGS) and all(r["state"] == "success" for r in report.runs.values())
            for report in self.reports
        )


def measure(args: argparse.Namespace, extra_env: dict[str, str] | None = None) -> Deployment:
    """Start a fresh deployment (``extra_env`` for Airflow and its tasks), run the chains, stop it."""
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir(parents=True)
    done = Deployment({}, [], [], [])
    begin = time.monotonic()
    stack = start_stack(HOME, extra_env=extra_env)
    done.phases["start MLflow + Airflow, DAGs parsed and unpaused"] = time.monotonic() - begin
    try:
        begin = time.monotonic()
        write_sample_data(stack, rows=args.rows, scoring_rows=args.scoring_rows)
        done.phases[f"write holdout and {args.scoring_rows:,} rows to score"] = time.monotonic() - begin
        for number in range(1, args.chains + 1):
            report = run_chain(stack, rows=args.rows, seed=10 + number)
            done.reports.append(report)
            done.phases[f"chain {number}: landing {args.rows:,} rows -> last DAG run finished"] = (
                report.seconds
            )
            chain_rows = [{**row, "chain": number} for row in _task_rows(stack, report)]
            done.rows += chain_rows
            done.chains.append(_chain_marks(stack, report, chain_rows))
    finally:
        begin = time.monotonic()
        stack.stop()
        done.phases["stop"] = time.monotonic() - begin
    return done


def _baseline_lines(measured: Deployment, baseline: Deployment) -> list[str]:
    """The same chains in a deployment with the warm runtime off, against the default, in one table."""

    def runtime(deployment: Deployment) -> float:
        return statistics.median(row["runtime"] for row in deployment.rows if "runtime" in row)

    out = [
        "",
        "Baseline in the same run: a second fresh deployment with the warm runtime off "
        "(`AIRFLOW__AI_PROVIDER__WARM_RUNTIME=False`: every job a new interpreter, as before it), "
        "the same chains after the default one.",
        "",
        "| deployment | trigger -> predictions, per chain (s) | median runtime phase per AI task (s) "
        "| median pre + post per AI task (s) |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, deployment in (("warm runtime on (default)", measured), ("warm runtime off", baseline)):
        chains = ", ".join(f"{x:.1f}" for x in _to_predictions(deployment.chains))
        out.append(
            f"| {name} | {chains} | {runtime(deployment):.2f} | {_orchestration(deployment.rows):.2f} |"
        )
    first = next((row for row in measured.rows if "spawn_to_runtime" in row), None)
    if first is not None:
        out += [
            "",
            f"The first AI task of the deployment ({first['dag']}.{first['task']}) waited for the rest of the "
            "preload of the worker's warm runtime server, which the provider's plugin started in the "
            f"background when the first task of {first['dag']} started: spawn {first['spawn_to_runtime']:.2f} "
            "s, against the spawn median above for the tasks forked by the running server. That server start "
            "is in chain 1 only (and again after `[ai_provider] warm_runtime_idle_seconds` without a job).",
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="new labelled customers to ingest")
    parser.add_argument("--scoring-rows", type=int, default=100_000, help="customers to score")
    parser.add_argument("--chains", type=int, default=2, help="chains run one after the other")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the deployment with the warm runtime off"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args()
    command = ".venv/bin/python benchmarks/bench_main_job.py"
    if (args.rows, args.scoring_rows, args.chains) != (20_000, 100_000, 2):
        command += f" --rows {args.rows} --scoring-rows {args.scoring_rows} --chains {args.chains}"
    measured = measure(args)
    body = _render(measured.phases, measured.reports, measured.chains, measured.rows, command)
    complete = measured.complete
    if complete and not args.no_baseline:
        baseline = measure(args, {"AIRFLOW__AI_PROVIDER__WARM_RUNTIME": "False"})
        complete = baseline.complete
        body += "\n" + "\n".join(_baseline_lines(measured, baseline))
    print(body)
    if not complete:
        print(f"\nthe chain did not complete: see the task logs under {HOME / 'airflow' / 'logs'}")
        return 1
    if not args.no_write:
        replace_section("Main job", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
