"""Parse time of each DAG template in a warm process, against a one-``EmptyOperator`` DAG file.

Target: each template parses in <= 50 ms once Airflow and the provider are imported (the DAG
processor's situation: it re-parses every file every 30 s in a process that has imported them
before).

In one process: import ``airflow.sdk``, ``KubernetesPodOperator``, ``EmptyOperator`` and every
provider operator module first; then, per file, parse it the way the DAG processor does, with
``DagBag(dag_folder=<file>, safe_mode=False)`` (Airflow's Python importer loads the file as a fresh
module under a unique name, then the DAGs are bagged and checked). One untimed parse per file comes
first (it is reported as "first parse"), then ``--repeats`` timed parses, round-robin over the files.
The baseline is an equally simple DAG file with one ``EmptyOperator``, parsed the same way.

Run: ``.venv/bin/python benchmarks/bench_templates.py``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / ".work" / "templates"
TEMPLATES = ("churn_ingest", "churn_retrain", "churn_batch_inference", "churn_drift_monitor")
TARGET_MS = 50.0
BASELINE_DAG = '''"""One EmptyOperator: the baseline for template parse time."""

from __future__ import annotations

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="bench_baseline_empty", schedule=None, catchup=False, tags=["bench"]) as dag:
    EmptyOperator(task_id="noop")
'''


def _warm_imports() -> None:
    import airflow.sdk  # noqa: F401
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401
    from airflow.providers.standard.operators.empty import EmptyOperator  # noqa: F401

    import airflow_ai_provider.operators.data_validation
    import airflow_ai_provider.operators.drift
    import airflow_ai_provider.operators.inference
    import airflow_ai_provider.operators.promotion
    import airflow_ai_provider.operators.quality_gate
    import airflow_ai_provider.operators.training  # noqa: F401


def _parse_ms(path: Path) -> float:
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(path), safe_mode=False)
    elapsed = (time.perf_counter() - started) * 1000
    if bag.import_errors or not bag.dags:
        raise RuntimeError(f"{path} did not parse: {bag.import_errors or 'no DAG found'}")
    return elapsed


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed parses per file")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(WORK / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO_ROOT))
    baseline = WORK / "baseline_empty_dag.py"
    baseline.write_text(BASELINE_DAG)
    files = {"baseline: one EmptyOperator": baseline}
    files.update({name: REPO_ROOT / "dag_templates" / f"{name}.py" for name in TEMPLATES})

    began = time.perf_counter()
    _warm_imports()
    warm_s = time.perf_counter() - began
    first = {name: _parse_ms(path) for name, path in files.items()}
    times: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(args.repeats):
        for name, path in files.items():
            times[name].append(_parse_ms(path))

    from bench_docs import machine_line, replace_section

    base_median = statistics.median(times["baseline: one EmptyOperator"])
    rows = [
        "| DAG file | first parse (ms) | median (ms) | p95 (ms) | median minus baseline (ms) "
        f"| <= {TARGET_MS:.0f} ms |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    failed = False
    for name, values in times.items():
        median, p95 = statistics.median(values), _p95(values)
        verdict = "pass" if p95 <= TARGET_MS else "FAIL"
        if name in TEMPLATES:
            failed |= verdict == "FAIL"
        label = name if name not in TEMPLATES else f"`dag_templates/{name}.py`"
        delta = "" if name not in TEMPLATES else f"{median - base_median:+.1f}"
        rows.append(f"| {label} | {first[name]:.1f} | {median:.1f} | {p95:.1f} | {delta} | {verdict} (p95) |")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    body = "\n".join(
        [
            machine_line(),
            "",
            "Command: `.venv/bin/python benchmarks/bench_templates.py` (one process; Airflow SDK, "
            "KubernetesPodOperator, EmptyOperator and all provider operator modules imported first, "
            f"{warm_s:.1f} s; then each file parsed with `DagBag(dag_folder=<file>, safe_mode=False)`, "
            "the DAG processor's import-and-bag path, once untimed and "
            f"{args.repeats} times timed, round-robin). Load average at the end: {load}.",
            "",
            *rows,
            "",
            "Target: each template parses in <= 50 ms in a warm process, judged on the p95. The first parse "
            "of a file also imports what the file needs beyond the warm-up imports.",
        ]
    )
    print(body)
    if not args.no_write:
        replace_section("Template parse time", body)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
