"""Benchmark of the ``infer`` job runtime against raw ``predict_proba`` and a naive pandas pipeline.

Run with ``.venv/bin/python benchmarks/bench_batch_inference.py``
from the repository root. It trains a 20-feature HistGradientBoostingClassifier on synthetic data,
registers it in a local SQLite MLflow store under ``benchmarks/.work/``, writes 1x (200k rows) and 10x
(2M rows) Parquet inputs and measures, in interleaved rounds:

1. raw ``estimator.predict_proba`` on the same rows, in memory as the model expects them (a pandas
   DataFrame of the feature columns), after a warm-up call;
2. the runtime end to end (read Parquet, predict, write Parquet) through its command line, from the
   result's own timings and from the wall clock;
3. the naive path: ``pandas.read_parquet`` everything, pyfunc ``predict``, ``to_parquet``;
4. peak RSS of the runtime and of the naive path at 1x and 10x.

It prints a Markdown table and replaces the ``## Batch inference`` section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_docs import DOC_PATH, replace_section

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
SECTION = "Batch inference"
MODEL_NAME = "bench-hgb"
FEATURES = 20
ROWS_1X = 200_000
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
COMMAND = ".venv/bin/python benchmarks/bench_batch_inference.py"
QUIET_BUSY = 0.1  # machine-wide CPU share other work may use when a measurement starts
#: How long a measurement waits for the machine to be idle (``BENCH_QUIET_TIMEOUT_S``, default 300 s).
QUIET_TIMEOUT_S = float(os.environ.get("BENCH_QUIET_TIMEOUT_S", "300"))
#: Measurements that started on a busy machine (the wait for quiet timed out): CPU share busy.
BUSY_STARTS: list[float] = []

RAW_SCRIPT = textwrap.dedent(
    """
    import statistics, sys, time
    import mlflow, pandas as pd
    mlflow.set_tracking_uri(sys.argv[1])
    estimator = mlflow.sklearn.load_model(sys.argv[2])
    frame = pd.read_parquet(sys.argv[3]).drop(columns=["row_id"])
    estimator.predict_proba(frame.head(1000))
    rates = []
    for _ in range(int(sys.argv[4])):
        started = time.perf_counter()
        estimator.predict_proba(frame)
        rates.append(len(frame) / (time.perf_counter() - started))
    print(statistics.median(rates))
    """
)
NAIVE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import mlflow, pandas as pd
    from airflow_ai_provider.runtime.memory import peak_rss_mb
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    started = time.perf_counter()
    frame = pd.read_parquet(sys.argv[3])
    features = frame.drop(columns=["row_id"])
    out = pd.DataFrame({"row_id": frame["row_id"], "prediction": model.predict(features)})
    out.to_parquet(sys.argv[4])
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(out), "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))
    """
)


def tracking_uri() -> str:
    return f"sqlite:///{WORK / 'mlflow.db'}"


def train_and_register() -> str:
    """Train the model on synthetic data and register it; return the new version."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = make_classification(n_samples=50_000, n_features=FEATURES, n_informative=12, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    estimator = HistGradientBoostingClassifier(random_state=0).fit(frame, y)
    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.create_experiment(
        "bench-batch-inference", artifact_location=(WORK / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(frame.head(100), estimator.predict(frame.head(100))),
            pip_requirements=["scikit-learn", "pandas", "numpy"],
            registered_model_name=MODEL_NAME,
            skops_trusted_types=TRUSTED,
        )
    return str(info.registered_model_version)


def write_input(path: Path, rows: int, seed: int, row_group_size: int | None = None) -> None:
    """Write ``rows`` synthetic rows, in row groups of ``row_group_size`` (pyarrow's default: up to
    1Mi rows each)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    columns = {"row_id": pa.array(np.arange(rows, dtype=np.int64))}
    columns.update({f"f{i}": pa.array(rng.standard_normal(rows) * 2) for i in range(FEATURES)})
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)


def raw_predict(version: str, path: Path, repeats: int) -> float:
    """Rows/s of the estimator's own ``predict_proba`` on the file's rows held in memory (median of runs).

    Measured in a fresh process, like the runtime and the naive path: this process has trained a
    model and holds other threads and memory.
    """
    command = [sys.executable, "-c", RAW_SCRIPT, tracking_uri(), f"models:/{MODEL_NAME}/{version}", str(path)]
    done = subprocess.run([*command, str(repeats)], cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"raw predict failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def runtime_command(
    version: str, path: Path, out: Path, result_path: Path, shard: tuple[int, int] = (0, 1), **params: Any
) -> list[str]:
    """The runtime CLI command scoring shard ``shard`` (index, count) of ``path`` into ``out``."""
    spec = {
        "job": "infer",
        "model": {"name": MODEL_NAME, "version": version},
        "inputs": [str(path)],
        "output": str(out),
        "mlflow": {"tracking_uri": tracking_uri()},
        "shard": {"index": shard[0], "count": shard[1]},
        "params": {"id_columns": ["row_id"], **params},
    }
    command = [sys.executable, "-m", "airflow_ai_provider.runtime", "infer", "--spec-json", json.dumps(spec)]
    return [*command, "--result-path", str(result_path)]


def run_runtime(version: str, path: Path, out: Path, tree: Path = REPO) -> dict[str, Any]:
    """Run the runtime CLI of the source ``tree`` on one input; return its result plus the wall-clock time."""
    shutil.rmtree(out, ignore_errors=True)
    result_path = WORK / "result.json"
    started = time.perf_counter()
    done = subprocess.run(
        runtime_command(version, path, out, result_path),
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"runtime failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(result_path.read_text())
    result["wall_s"] = wall
    return result


def run_naive(version: str, path: Path, out: Path) -> dict[str, Any]:
    """Run the naive pandas pipeline in a fresh process; return rows, seconds, peak RSS and wall time."""
    command = [
        sys.executable,
        "-c",
        NAIVE_SCRIPT,
        tracking_uri(),
        f"models:/{MODEL_NAME}/{version}",
        str(path),
    ]
    started = time.perf_counter()
    done = subprocess.run([*command, str(out)], cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"naive path failed:\n{done.stderr}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall_s"] = wall
    return figures


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import sklearn

    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"scikit-learn {sklearn.__version__}, {platform.system()} {platform.release()}"
    )


def render(figures: dict[str, Any], rounds: int) -> str:
    """The Markdown body of the section (without its heading) with the figures."""
    import statistics

    raw1, raw10 = figures["raw_1x"], figures["raw_10x"]
    rt1, rt10 = figures["runtime_1x"], figures["runtime_10x"]
    rss1, rss10 = figures["runtime_1x_max_rss"], figures["runtime_10x_max_rss"]
    nv1, nv10 = figures["naive_1x"], figures["naive_10x"]

    def row(name: str, rows: int, rate: float, wall: float | None, rss: float | None) -> str:
        cells = [f"{rate:,.0f}", f"{wall:,.0f}" if wall else "-", f"{rss:,.0f}" if rss else "-"]
        return f"| {name} | {rows:,} | {' | '.join(cells)} |"

    def runtime_row(result: dict[str, Any], rss: float) -> str:
        rows = result["rows_out"]
        name = "runtime CLI: read Parquet, predict, write Parquet"
        return row(name, rows, result["metrics"]["rows_per_s"], rows / result["wall_s"], rss)

    def naive_row(naive: dict[str, Any]) -> str:
        name = "naive: `pd.read_parquet`, pyfunc `predict`, `to_parquet`"
        rows = naive["rows"]
        return row(name, rows, rows / naive["seconds"], rows / naive["wall_s"], naive["peak_rss_mb"])

    ratio1, ratio10 = rt1["metrics"]["rows_per_s"] / raw1, rt10["metrics"]["rows_per_s"] / raw10

    def per_round(scale: str) -> str:
        ratios = figures[f"ratios_{scale}"]
        return f"{', '.join(f'{r:.2f}x' for r in ratios)} (median {statistics.median(ratios):.2f}x)"

    def verdict(ok: bool) -> str:
        met = "**met**" if ok else "**NOT met**"
        return f"{met} (not conclusive: measured on a busy machine)" if BUSY_STARTS else met

    quiet = f"BENCH_QUIET_TIMEOUT_S={QUIET_TIMEOUT_S:g} " if "BENCH_QUIET_TIMEOUT_S" in os.environ else ""
    command = f"{quiet}{COMMAND}" + (f" --rounds {rounds}" if rounds != 3 else "")
    rss_ratio = rss10 / rss1
    load = " / ".join(f"{value:.1f}" for value in figures["load_before"])
    load_after = " / ".join(f"{value:.1f}" for value in figures["load_after"])
    m1, m10 = rt1["metrics"], rt10["metrics"]
    lines = [
        f"Model: scikit-learn `HistGradientBoostingClassifier` (100 iterations, {FEATURES} numeric features) "
        "trained on 50,000 synthetic rows and registered in a local SQLite MLflow store (skops format). "
        "Input: one Parquet file written with pyarrow defaults (row groups of up to 1Mi rows), `row_id` "
        "plus the features; output: `row_id`, `prediction`, `confidence`, `proba_0`, `proba_1`. The "
        "runtime runs with its defaults (no `batch_size`: batches sized from the Parquet metadata). "
        f"Best of {rounds} interleaved rounds (raw, runtime, naive at 1x, then at 10x), each measurement "
        f"started once the shared machine was idle (under {QUIET_BUSY:.0%} CPU busy) or after "
        f"{QUIET_TIMEOUT_S:.0f} s; peak RSS is the highest seen.",
        "",
        "| path | rows | rows/s (processing) | rows/s (wall clock) | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        row("raw `estimator.predict_proba`, rows in memory", ROWS_1X, raw1, None, None),
        row("raw `estimator.predict_proba`, rows in memory", 10 * ROWS_1X, raw10, None, None),
        runtime_row(rt1, rss1),
        runtime_row(rt10, rss10),
        naive_row(nv1),
        naive_row(nv10),
        "",
        "*Raw* is the fair baseline: `predict_proba` on the rows already in memory as the model expects "
        "them (a pandas DataFrame of the features, read before timing, after a warm-up call), median of "
        "3 calls at 1x, one at 10x. *Processing* is the data phase: the runtime's own `rows_per_s` "
        "(`stream_s`: from the first batch taken to the published output file, with its checksum), the "
        "naive path's read + predict + write. The runtime starts reading the first batch while the model "
        "loads (Parquet input whose columns are all features or ids), so that read is not in its data "
        "phase but in its wall clock. *Wall clock* is the whole process: interpreter start, imports "
        "(MLflow, scikit-learn, skops) and model load (runtime `load_model_s` "
        f"{m1['load_model_s']:.1f} s at 1x; `duration_s` {m1['duration_s']:.1f} s at 1x, "
        f"{m10['duration_s']:.1f} s at 10x).",
        "",
        f"- Must reach: runtime >= 0.9x raw at 200k rows: {ratio1:.2f}x, {verdict(ratio1 >= 0.9)}; "
        f">= 0.95x at 2M rows: {ratio10:.2f}x, {verdict(ratio10 >= 0.95)} (best runtime vs best raw). "
        f"Within each round (raw, then the runtime right after it): {per_round('1x')} at 1x, "
        f"{per_round('10x')} at 10x; spikes of other work on the 2 shared cores swing single figures.",
        f"- Must reach: runtime peak RSS at 10x <= 1.2x of 1x: {rss_ratio:.2f}x ({rss1:,.0f} MB at 1x, "
        f"{rss10:,.0f} MB at 10x), {verdict(rss_ratio <= 1.2)}. The naive path grows with the input "
        f"({nv1['peak_rss_mb']:,.0f} MB at 1x, {nv10['peak_rss_mb']:,.0f} MB at 10x).",
        f"- Batches (sized from the metadata within 160 MiB: one batch when the shard fits as 4 copies, "
        f"else 6 copies a batch): {m1['batches']} of {m1['batch_rows']:,} rows at 1x, {m10['batches']} of "
        f"{m10['batch_rows']:,} at 10x. Stage times at 10x (reading overlaps predicting): read "
        f"{m10['read_s']:.2f} s, predict {m10['predict_s']:.2f} s, write {m10['write_s']:.2f} s; at 1x: read "
        f"{m1['read_s']:.2f} s (the first batch during the model load), predict {m1['predict_s']:.2f} s, "
        f"write {m1['write_s']:.2f} s.",
        f"- At 1x the data phase is one batch, every step of it a first call in a fresh process: "
        f"predicting takes {m1['predict_s']:.2f} s; raw's warm `predict_proba` takes {ROWS_1X / raw1:.2f} s. "
        "The features go into one C-ordered matrix per shard (which `predict_proba` runs about 20% "
        "faster on, in CPU time, than on the F-ordered frame raw uses); the reader thread allocates "
        "and writes it once while the model loads, as the first batch is read then, since a matrix "
        "first touched in the data phase costs 50-120 ms of page faults against about 5 ms once "
        "warm; `prediction` and `confidence` come from whole-column passes over the one class-major "
        "copy of the probabilities (about 2 ms at 200k rows instead of 3.5 ms for `argmax` and fancy "
        "indexing). On this shared 2-core machine single 1x figures swing by +-20%.",
        "",
        f"- Date: {figures['date']}",
        f"- Machine: {figures['machine']}; load average {load} before, {load_after} after "
        f"(shared machine: {busy_starts(rounds * 6)})",
        f"- Command: `{command}`",
    ]
    return "\n".join(lines)


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time that was busy over ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 1 - (idle2 - idle) / max(1, total2 - total)


def wait_for_quiet(timeout: float) -> None:
    """Wait (up to ``timeout`` s) until the shared machine is idle, so other work does not skew a figure."""
    if not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + timeout
    while (busy := cpu_busy()) > QUIET_BUSY and time.monotonic() < deadline:
        pass
    if busy > QUIET_BUSY:
        BUSY_STARTS.append(busy)
        print(f"machine still {busy:.0%} busy after {timeout:.0f} s; measuring anyway", flush=True)


def busy_starts(measurements: int) -> str:
    """How many of the ``measurements`` started on a busy machine, for the record."""
    if not BUSY_STARTS:
        return f"all {measurements} measurements started on an idle machine"
    shares = ", ".join(f"{share:.0%}" for share in BUSY_STARTS)
    return f"{len(BUSY_STARTS)} of {measurements} measurements started with the CPU {shares} busy"


def keep_best(figures: dict[str, Any], key: str, value: Any, rate: float) -> None:
    """Keep the fastest of the rounds (the machine is shared: slower rounds met other load)."""
    best = figures.get(f"{key}_rate")
    if best is None or rate > best:
        figures[key], figures[f"{key}_rate"] = value, rate


def measure_round(version: str, inputs: dict[str, Path], figures: dict[str, Any]) -> None:
    """One round of every measurement, interleaved so that load from elsewhere hits all of them."""
    for scale, path in inputs.items():
        wait_for_quiet(QUIET_TIMEOUT_S)
        raw = raw_predict(version, path, repeats=3 if scale == "1x" else 1)
        keep_best(figures, f"raw_{scale}", raw, raw)
        print(f"raw predict {scale}: {raw:,.0f} rows/s", flush=True)
        with tempfile.TemporaryDirectory(dir=WORK) as scratch:
            wait_for_quiet(QUIET_TIMEOUT_S)
            result = run_runtime(version, path, Path(scratch) / "out")
            metrics = result["metrics"]
            keep_best(figures, f"runtime_{scale}", result, metrics["rows_per_s"])
            figures.setdefault(f"ratios_{scale}", []).append(metrics["rows_per_s"] / raw)
            figures[f"runtime_{scale}_max_rss"] = max(
                figures.get(f"runtime_{scale}_max_rss", 0), metrics["peak_rss_mb"]
            )
            print(
                f"runtime {scale}: {metrics['rows_per_s']:,.0f} rows/s, wall {result['wall_s']:.1f} s, "
                f"peak RSS {metrics['peak_rss_mb']:,.0f} MB",
                flush=True,
            )
            wait_for_quiet(QUIET_TIMEOUT_S)
            naive = run_naive(version, path, Path(scratch) / "naive.parquet")
            keep_best(figures, f"naive_{scale}", naive, naive["rows"] / naive["seconds"])
            print(
                f"naive {scale}: {naive['rows'] / naive['seconds']:,.0f} rows/s, "
                f"peak RSS {naive['peak_rss_mb']:,.0f} MB",
                flush=True,
            )


def reset_registry() -> None:
    """Remove the previous run's registry: each run registers version 1 afresh."""
    for stale in (WORK / "mlflow.db", WORK / "artifacts"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()


def prepare_inputs(
    work: Path = WORK,
    rows_1x: int = ROWS_1X,
    write: Callable[[Path, int, int], None] | None = None,
    file_name: str = "data.parquet",
) -> dict[str, Path]:
    """The 1x and 10x inputs (here 200k and 2M rows) under ``work``, written once with ``write``
    (default :func:`write_input`) and reused."""
    write = write or write_input
    inputs = {"1x": work / "input-1x" / file_name, "10x": work / "input-10x" / file_name}
    for scale, path in inputs.items():
        rows = rows_1x * (10 if scale == "10x" else 1)
        if not path.exists():
            print(f"writing {rows:,} rows to {path}", flush=True)
            write(path, rows, len(scale))
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="print the table only")
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds; the best is kept")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    reset_registry()
    inputs = prepare_inputs()
    print("training and registering the model", flush=True)
    version = train_and_register()
    figures: dict[str, Any] = {"date": datetime.date.today().isoformat(), "machine": machine()}
    figures["load_before"] = os.getloadavg()
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number} of {args.rounds}", flush=True)
        measure_round(version, inputs, figures)
    figures["load_after"] = os.getloadavg()
    section = render(figures, args.rounds)
    print()
    print(section)
    if not args.no_doc:
        replace_section(SECTION, section)
        print(f"updated {DOC_PATH.relative_to(REPO)}")


if __name__ == "__main__":
    main()
