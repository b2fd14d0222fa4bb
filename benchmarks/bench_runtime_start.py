"""Runtime start to first row with a cold and a warm model cache, model load times and exit time.

Each round starts fresh ``python -m airflow_ai_provider.runtime infer`` processes against a real
``mlflow server`` and a registered scikit-learn model, one per variant, in turn (interleaved):

- ``off``: no model cache (the behaviour before the cache: download into the scratch folder);
- ``cold``: an empty cache folder (download, checksum and fill);
- ``warm``: the folder a previous process filled, as a second shard finds it;
- ``warm, full exit``: the same with ``AI_PROVIDER_RUNTIME_FULL_EXIT=1`` (the interpreter's normal
  teardown instead of ``os._exit``), to compare the exit time in the same run;
- ``warm runtime, cold cache`` and ``warm runtime, warm cache``: the job forked by the warm runtime
  server (``[ai_provider] warm_runtime``, on by default;
  :mod:`airflow_ai_provider.execution.warm_runtime`), which imported numpy, pyarrow, pandas,
  scikit-learn, MLflow and Great Expectations once when it started, with an empty cache folder and
  with the filled one. The second is what a second shard on the same worker pays.

The server is started once, before the rounds, by its first job; that job's time from the request to
the job's pid is reported as the server's start.

Start to first row: from just before the process is started to the arrival of its ``wrote ...``
line for a one-batch input (the first batch predicted and written). Model load: the result's
``load_model_s`` (lookup, download or cache hit, deserialization; ``import mlflow`` included, as a
fresh process pays it). Exit: from the result file's modification time to the end of the process.

Model load beyond the flavour's library: the same three cache states in a fresh process that imports
scikit-learn's estimators first and then calls ``load_model`` (``import sklearn.ensemble`` alone is
about 0.8 s here, paid by any process that predicts with the model, cache or not).

Run: ``.venv/bin/python benchmarks/bench_runtime_start.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_docs import machine_line, replace_section  # noqa: E402

VARIANTS = (
    "off",
    "cold",
    "warm",
    "warm, full exit",
    "warm runtime, cold cache",
    "warm runtime, warm cache",
)
LOAD_ONLY = ("off", "cold", "warm")
HEADING = "Runtime start and model cache"


def _spec(tracking_uri: str, model: dict[str, Any], source: Path, output: Path) -> str:
    from airflow_ai_provider.runtime.contract.spec import JobSpec
    from tests._support.churn_sample import ID_COLUMN

    return JobSpec.from_dict(
        {
            "job": "infer",
            "model": {"name": model["name"], "version": str(model["version"])},
            "inputs": [f"file://{source}"],
            "output": str(output),
            "mlflow": {"tracking_uri": tracking_uri},
            "params": {"id_columns": [ID_COLUMN]},
        }
    ).to_json()


def _run_once(spec: str, work: Path, env: dict[str, str], warm_root: Path | None = None) -> dict[str, float]:
    """One runtime job: start to first row, model load times, exit time.

    :param warm_root: the warm runtime's socket folder: the job is forked by its server (started by
        the first such job) instead of started as a new process.
    """
    from airflow_ai_provider.execution import warm_runtime

    result = work / "result.json"
    result.unlink(missing_ok=True)
    scratch = work / "tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env = {**env, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "airflow_ai_provider.runtime", "infer", "--spec-json", spec]
    command += ["--result-path", str(result)]
    started = time.time()
    if warm_root is not None:
        process: Any = warm_runtime.start_job(command, env, root=warm_root, idle_seconds=600)
    else:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    forked_s = time.time() - started
    first_row = None
    for line in process.stdout:
        if first_row is None and line.startswith("wrote "):
            first_row = time.time() - started
    code = process.wait()
    ended = time.time()
    if code != 0 or first_row is None:
        raise RuntimeError(f"runtime exited with code {code}")
    payload = json.loads(result.read_text())
    model = payload["model"]
    return {
        "first_row_s": first_row,
        "load_model_s": payload["metrics"]["load_model_s"],
        "download_s": model.get("download_s", 0.0),
        "deserialize_s": model.get("deserialize_s", 0.0),
        "exit_s": ended - result.stat().st_mtime,
        "cache": model.get("model_cache"),
        "forked_s": forked_s,
        "server_pid": getattr(process, "server_pid", 0),
    }


_LOAD_ONLY = """
import json, sys, time
import numpy, pyarrow, sklearn.ensemble
from airflow_ai_provider.runtime.contract.model_reference import ModelReference
from airflow_ai_provider.runtime.contract.spec import MlflowRef
from airflow_ai_provider.runtime.models.loading import load_model
from airflow_ai_provider.runtime.tracking import set_process_defaults
set_process_defaults()
started = time.perf_counter()
model = load_model(ModelReference(sys.argv[1], sys.argv[2]), MlflowRef(tracking_uri=sys.argv[3]), sys.argv[4], [])
print(json.dumps({"load_s": time.perf_counter() - started, "cache": model.info["model_cache"]}))
"""


def _load_only(model: dict[str, Any], tracking_uri: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``load_model`` alone, in a fresh process that imported scikit-learn first."""
    scratch = work / "load-only"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    args = [model["name"], str(model["version"]), tracking_uri, str(scratch)]
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_ONLY, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(rounds: int) -> tuple[dict[str, list[dict[str, float]]], list[float], list[float]]:
    from tests._support.churn_sample import make_customers, train_and_register
    from tests._support.servers import start_mlflow_server, stop_server
    from tests.unit.runtime.conftest import write_parquet

    os.chdir(REPO)  # the jobs' working folder, for new processes and forked ones alike
    root = Path(tempfile.mkdtemp(prefix="bench-runtime-start-"))
    server = start_mlflow_server(root / "mlflow")
    server_pids: set[int] = set()
    load_before = list(os.getloadavg())
    try:
        model = train_and_register(server.url, "bench-start", alias=None, n_rows=20_000)
        source = write_parquet(root / "in" / "data.parquet", make_customers(5_000, seed=1, with_label=False))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
        warm_cache = root / "warm-cache"
        spec = _spec(server.url, model, source, root / "out")
        _run_once(spec, root, {**base, "AI_PROVIDER_MODEL_CACHE": str(warm_cache)})  # fills the warm cache
        warm_root = root / "warm-runtime"
        first = _run_once(spec, root, {**base, "AI_PROVIDER_MODEL_CACHE": str(warm_cache)}, warm_root)
        server_pids.add(first["server_pid"])
        figures: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        figures.update({f"{variant} (load only)": [] for variant in LOAD_ONLY})
        figures["server start"] = [first]
        for index in range(rounds):
            for variant in VARIANTS:
                env = dict(base)
                if variant in ("cold", "warm runtime, cold cache"):
                    env["AI_PROVIDER_MODEL_CACHE"] = str(root / f"cold-cache-{index}-{len(variant)}")
                elif variant.startswith("warm"):
                    env["AI_PROVIDER_MODEL_CACHE"] = str(warm_cache)
                if variant == "warm, full exit":
                    env["AI_PROVIDER_RUNTIME_FULL_EXIT"] = "1"
                shutil.rmtree(root / "out", ignore_errors=True)
                forked = warm_root if variant.startswith("warm runtime") else None
                figures[variant].append(_run_once(spec, root, env, forked))
                server_pids.add(figures[variant][-1]["server_pid"])
                if variant in LOAD_ONLY:
                    if variant == "cold":
                        env["AI_PROVIDER_MODEL_CACHE"] = str(root / f"cold-cache-load-{index}")
                    figures[f"{variant} (load only)"].append(_load_only(model, server.url, root, env))
        for variant in VARIANTS:
            expected = {"off": "off", "cold": "miss", "warm runtime, cold cache": "miss"}.get(variant, "hit")
            for runs in (figures[variant], figures.get(f"{variant} (load only)", [])):
                assert all(run["cache"] == expected for run in runs), (variant, runs)
        return figures, load_before, list(os.getloadavg())
    finally:
        for pid in server_pids - {0}:  # the warm runtime server (its jobs have all ended)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


def _median(runs: list[dict[str, float]], field: str) -> float:
    return statistics.median(run[field] for run in runs)


def report(
    figures: dict[str, list[dict[str, float]]], rounds: int, before: list[float], after: list[float]
) -> str:
    rows = [
        "| variant | start to first row | model load | of which download | of which deserialize | exit after result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variant in VARIANTS:
        runs = figures[variant]
        rows.append(
            f"| {variant} | {_median(runs, 'first_row_s'):.2f} s | {_median(runs, 'load_model_s'):.2f} s | "
            f"{_median(runs, 'download_s'):.2f} s | {_median(runs, 'deserialize_s'):.2f} s | "
            f"{_median(runs, 'exit_s'):.2f} s |"
        )
    cold, warm = _median(figures["cold"], "load_model_s"), _median(figures["warm"], "load_model_s")
    off = _median(figures["off"], "load_model_s")
    forked_cold = _median(figures["warm runtime, cold cache"], "load_model_s")
    forked_warm = _median(figures["warm runtime, warm cache"], "load_model_s")
    ratio = forked_warm / cold
    fast_exit, full_exit = _median(figures["warm"], "exit_s"), _median(figures["warm, full exit"], "exit_s")
    met = "met" if ratio <= 0.2 else "**not met**"
    lo_cold = _median(figures["cold (load only)"], "load_s")
    lo_warm = _median(figures["warm (load only)"], "load_s")
    lo_off = _median(figures["off (load only)"], "load_s")
    first = figures["server start"][0]
    first_row_fresh = _median(figures["warm"], "first_row_s")
    first_row_forked = _median(figures["warm runtime, warm cache"], "first_row_s")
    loads = " / ".join(f"{x:.1f}" for x in before) + " before, " + " / ".join(f"{x:.1f}" for x in after)
    return "\n".join(
        [
            "`.venv/bin/python benchmarks/bench_runtime_start.py` "
            f"({rounds} interleaved rounds, medians; a real `mlflow server` on loopback, a registered "
            "HistGradientBoosting churn model saved with cloudpickle, a one-batch input of 5,000 rows). "
            "Each figure is one job: a new runtime process (`off`, `cold`, `warm`), or a job forked by "
            "the warm runtime server (`[ai_provider] warm_runtime`, on by default, so what a local job "
            "gets; started once before the rounds).",
            "",
            machine_line() + f" Machine load (1/5/15 min): {loads} after.",
            "",
            *rows,
            "",
            f"- **Must reach: a second shard's model load with a warm cache at most 1/5 of a cold load: "
            f"{met}.** In the warm runtime (the default) with the cache filled {forked_warm:.3f} s, "
            f"against a cold load (a new process, empty cache) of {cold:.2f} s: {ratio:.2f}x.",
            f"- The cache alone, in a new process: {warm:.2f} s warm against {cold:.2f} s cold "
            f"({warm / cold:.2f}x; no cache {off:.2f} s). What is left there is scikit-learn's own import "
            "(`import sklearn.ensemble`, scipy and scikit-learn modules) and the unpickling: with "
            f"scikit-learn imported first, `load_model` takes {lo_warm:.2f} s warm against {lo_cold:.2f} s "
            f"cold ({lo_warm / lo_cold:.2f}x) and {lo_off:.2f} s without a cache. The warm runtime server "
            "pays that import once for every job of the worker.",
            f"- The warm runtime with an empty cache: {forked_cold:.2f} s (the download and checksums).",
            f"- Start to first row, warm cache: {first_row_forked:.2f} s forked by the warm runtime "
            f"against {first_row_fresh:.2f} s in a new process. The first job on a worker starts the "
            f"server: {first['forked_s']:.2f} s from its request to the job's pid (the preload), "
            f"{first['first_row_s']:.2f} s to its first row.",
            f"- Exit after the result is written: {fast_exit:.2f} s with `os._exit` against "
            f"{full_exit:.2f} s with the interpreter's normal teardown (`AI_PROVIDER_RUNTIME_FULL_EXIT=1`).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="print the section, do not write it")
    args = parser.parse_args()
    figures, before, after = measure(args.rounds)
    body = report(figures, args.rounds, before, after)
    print(body)
    if not args.no_docs:
        replace_section(HEADING, body)


if __name__ == "__main__":
    main()
