"""The cost of the package layout: import time and inference throughput of this tree against a baseline revision.

Both source trees run with the same virtualenv, alternating in one run, so machine load hits both:

1. importing Airflow's SDK and KubernetesPodOperator (the floor), then the same plus the provider's
   public operators, hook and two templates, from each tree (fresh interpreters, median);
2. the ``infer`` job of each tree's runtime on the same 200k- and 2M-row Parquet inputs with the same
   registered model (rows/s from the job's own result, best of the rounds; peak RSS, the largest).

The baseline tree is a ``git worktree`` of ``--baseline`` (default: the last commit before the
package layout changed) under ``benchmarks/.work/``.

Run: ``.venv/bin/python benchmarks/bench_layout.py [--baseline REV] [--rounds N] [--no-doc]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import bench_batch_inference as inference
from bench_docs import machine_line, replace_section
from bench_import_time import BASELINE as AIRFLOW_IMPORTS
from bench_import_time import _time

REPO = Path(__file__).resolve().parents[1]
#: The last commit with the old layout (flat runtime modules, one hook module, lineage.py).
DEFAULT_BASELINE = "f98669a"
#: Public names both layouts export, and two templates: what a DAG file of a user imports.
PROVIDER_IMPORTS = (
    AIRFLOW_IMPORTS + "; from airflow_ai_provider import BatchInferenceOperator, DataValidationOperator, "
    "DriftDetectionOperator, MlflowHook, ModelValidationOperator, PromoteModelOperator, RetrainModelOperator"
    "; import dag_templates.churn_batch_inference, dag_templates.churn_retrain"
)
IMPORT_REPEATS = 5


def baseline_tree(revision: str) -> Path:
    """A checkout of ``revision`` in ``benchmarks/.work/`` (made once, reused)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = inference.WORK / f"baseline-{commit}"
    if not tree.exists():
        inference.WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True)
    return tree


def measure_imports(trees: dict[str, Path], figures: dict[str, Any]) -> None:
    """Import wall times of the floor and of each tree's provider, alternating."""
    for tree in trees.values():
        _time(PROVIDER_IMPORTS, tree)  # warm the file cache
    for _ in range(IMPORT_REPEATS):
        figures.setdefault("floor", []).append(_time(AIRFLOW_IMPORTS))
        for name, tree in trees.items():
            figures.setdefault(f"import_{name}", []).append(_time(PROVIDER_IMPORTS, tree))


def measure_inference(version: str, inputs: dict[str, Path], trees: dict[str, Path], figures: dict) -> None:
    """One round of the infer job per input size and tree."""
    for scale, path in inputs.items():
        for name, tree in trees.items():
            inference.wait_for_quiet(inference.QUIET_TIMEOUT_S)
            with tempfile.TemporaryDirectory(dir=inference.WORK) as scratch:
                result = inference.run_runtime(version, path, Path(scratch) / "out", tree)
            metrics = result["metrics"]
            key = f"{name}_{scale}"
            figures[f"{key}_rate"] = max(figures.get(f"{key}_rate", 0.0), metrics["rows_per_s"])
            figures[f"{key}_rss"] = max(figures.get(f"{key}_rss", 0.0), metrics["peak_rss_mb"])
            print(
                f"{name} {scale}: {metrics['rows_per_s']:,.0f} rows/s, {metrics['peak_rss_mb']:,.0f} MB",
                flush=True,
            )


def render(figures: dict[str, Any], baseline: str, rounds: int) -> str:
    floor = statistics.median(figures["floor"])
    before = statistics.median(figures["import_baseline"]) - floor
    after = statistics.median(figures["import_current"]) - floor
    rows = [
        "| measure | baseline layout | this layout | change |",
        "|---|---|---|---|",
        f"| import time added to Airflow SDK + KubernetesPodOperator (s, median) | {before:.3f} | {after:.3f} "
        f"| {after - before:+.3f} s |",
    ]
    for scale in ("1x", "10x"):
        old, new = figures[f"baseline_{scale}_rate"], figures[f"current_{scale}_rate"]
        old_rss, new_rss = figures[f"baseline_{scale}_rss"], figures[f"current_{scale}_rss"]
        rows.append(
            f"| infer job, {scale} rows ({'200k' if scale == '1x' else '2M'}), rows/s (best) | {old:,.0f} "
            f"| {new:,.0f} | {new / old - 1:+.1%} |"
        )
        rows.append(
            f"| infer job, {scale}, peak RSS (MB, largest) | {old_rss:,.0f} | {new_rss:,.0f} "
            f"| {new_rss - old_rss:+,.0f} MB |"
        )
    return (
        f"{machine_line()}\n\nCommand: `.venv/bin/python benchmarks/bench_layout.py` (baseline "
        f"`{baseline}`, the last commit before the layout of `docs/architecture.md`; {IMPORT_REPEATS} fresh "
        f"interpreters per import variant, {rounds} inference rounds, both trees alternating in one run "
        "with the same virtualenv).\n\n" + "\n".join(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the old layout")
    parser.add_argument("--rounds", type=int, default=3, help="inference rounds; the best is kept")
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    args = parser.parse_args()
    trees = {"baseline": baseline_tree(args.baseline), "current": REPO}
    inference.WORK.mkdir(parents=True, exist_ok=True)
    inference.reset_registry()
    inputs = inference.prepare_inputs()
    version = inference.train_and_register()
    figures: dict[str, Any] = {}
    measure_imports(trees, figures)
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number} of {args.rounds}", flush=True)
        measure_inference(version, inputs, trees, figures)
        trees = dict(reversed(list(trees.items())))  # the other tree goes first next round
    body = render(figures, args.baseline, args.rounds)
    print(body)
    if not args.no_doc:
        replace_section("Package layout", body)


if __name__ == "__main__":
    main()
