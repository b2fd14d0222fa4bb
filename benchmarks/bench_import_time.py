"""How much importing the provider adds to importing Airflow and KubernetesPodOperator.

Each variant runs in a fresh interpreter, several times, alternating; the median is reported. The
``-X importtime`` breakdown of the provider's own modules is printed for the last run.

Run: ``.venv/bin/python benchmarks/bench_import_time.py``
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_docs import machine_line, replace_section

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = (
    "import airflow.sdk; from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator"
)
PROVIDER = (
    BASELINE + "; from airflow_ai_provider.operators.inference import BatchInferenceOperator"
    "; import airflow_ai_provider.hooks.mlflow, airflow_ai_provider.links, dag_templates.churn_batch_inference, dag_templates.churn_retrain"
)
REPEATS = 7


def _time(code: str, tree: Path = REPO_ROOT) -> float:
    """Wall time of ``code`` in a fresh interpreter that imports the provider from the source ``tree``."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tree, capture_output=True)
    return time.perf_counter() - started


def _own_modules_us(code: str) -> int:
    """Self import time (µs) summed over this project's modules, from ``-X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    ).stderr
    total = 0
    for line in err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match and match[2].split(".")[0] in ("airflow_ai_provider", "dag_templates"):
            total += int(match[1])
    return total


def main() -> None:
    _time(PROVIDER)  # warm the OS file cache
    base, ours = [], []
    for _ in range(REPEATS):
        base.append(_time(BASELINE))
        ours.append(_time(PROVIDER))
    base_s, ours_s = statistics.median(base), statistics.median(ours)
    own_ms = _own_modules_us(PROVIDER) / 1000
    rows = [
        "| import | median wall time (s) |",
        "|---|---|",
        f"| Airflow SDK + KubernetesPodOperator (baseline) | {base_s:.3f} |",
        f"| baseline + provider operators, hook, links, batch inference template | {ours_s:.3f} |",
        f"| **added by the provider** (target <= 0.3 s) | **{ours_s - base_s:+.3f}** |",
        f"| provider's own modules (self time summed, `-X importtime`) | {own_ms / 1000:.3f} |",
    ]
    table = "\n".join(rows)
    print(table)
    body = (
        f"{machine_line()}\n\nCommand: `.venv/bin/python benchmarks/bench_import_time.py` "
        f"({REPEATS} fresh interpreters per variant, alternating; median).\n\n{table}\n\n"
        "No module-level import of mlflow, great_expectations, pandas, pyarrow, sklearn or boto3 outside "
        "`runtime/`: ruff's banned-module-level-imports rule (TID253) enforces it, and "
        "`tests/unit/test_import_cost.py` checks that importing the provider loads none of them."
    )
    replace_section("Import cost", body)


if __name__ == "__main__":
    main()
