"""What the run guard adds to each AI task: starting and releasing its process, against a bare
interpreter start in the same run (the least any helper process costs).

Run: ``.venv/bin/python benchmarks/bench_run_guard.py``
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from bench_docs import machine_line, replace_section

from airflow_ai_provider.execution.run_guard import TaskRunGuard

REPEATS = 21
IDENTITY = {"tracking_uri": "http://127.0.0.1:9", "run_id": "r", "parent_run_id": "p", "try_number": 1}


def _bare_interpreter() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def _guard() -> float:
    started = time.perf_counter()
    TaskRunGuard(IDENTITY, {}).release()
    return time.perf_counter() - started


def main() -> None:
    _guard()  # warm the OS file cache
    bare, guard = [], []
    for _ in range(REPEATS):
        bare.append(_bare_interpreter())
        guard.append(_guard())
    rows = [
        "| per task | median (s) | max (s) |",
        "|---|---|---|",
        f"| `python -c pass` (baseline) | {statistics.median(bare):.3f} | {max(bare):.3f} |",
        f"| run guard: start, hand over the run, release | {statistics.median(guard):.3f} | {max(guard):.3f} |",
    ]
    table = "\n".join(rows)
    print(table)
    body = (
        f"{machine_line()}\n\nCommand: `.venv/bin/python benchmarks/bench_run_guard.py` "
        f"({REPEATS} runs of each, alternating). The guard imports nothing heavy unless the task "
        "process dies, so its cost is an interpreter start; it runs while the task works.\n\n"
        f"{table}"
    )
    replace_section("Run guard", body)


if __name__ == "__main__":
    main()
