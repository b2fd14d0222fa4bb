"""Runtime start to first row with a cold and a warm model cache, model load times and exit time.

Each round starts fresh ``python -m airflow_ai_provider.runtime infer`` processes against a real
``mlflow server`` and a registered scikit-learn model, one per variant, in turn (interleaved):

- ``off``: no model cache (the behaviour before the cache: download into the scratch folder);
- ``cold``: an empty cache folder (download, checksum and fill);
- ``warm``: the folder a previous process filled, as a second shard finds it;
- ``warm, full exit``: the same with ``AI_PROVIDER_RUNTIME_FULL_EXIT=1`` (the interpreter's normal
  teardown instead of ``os._exit``), to compare the exit time in the same run.

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
import json
import os
import shutil
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

VARIANTS = ("off", "cold", "warm", "warm, full exit")
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


def _run_once(spec: str, work: Path, env: dict[str, str]) -> dict[str, float]:
    """One runtime process: start to first row, model load times, exit time."""
    result = work / "result.json"
    result.unlink(missing_ok=True)
    scratch = work / "tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env = {**env, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "airflow_ai_provider.runtime", "infer", "--spec-json", spec]
    started = time.time()
    process = subprocess.Popen(
        [*command, "--result-path", str(result)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
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

    root = Path(tempfile.mkdtemp(prefix="bench-runtime-start-"))
    server = start_mlflow_server(root / "mlflow")
    load_before = list(os.getloadavg())
    try:
        model = train_and_register(server.url, "bench-start", alias=None, n_rows=20_000)
        source = write_parquet(root / "in" / "data.parquet", make_customers(5_000, seed=1, with_label=False))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AI_PROVIDER_", "MLFLOW_"))}
        warm_cache = root / "warm-cache"
        spec = _spec(server.url, model, source, root / "out")
        _run_once(spec, root, {**base, "AI_PROVIDER_MODEL_CACHE": str(warm_cache)})  # fills the warm cache
        figures: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        figures.update({f"{variant} (load only)": [] for variant in LOAD_ONLY})
        for index in range(rounds):
            for variant in VARIANTS:
                env = dict(base)
                if variant == "cold":
                    env["AI_PROVIDER_MODEL_CACHE"] = str(root / f"cold-cache-{index}")
                elif variant.startswith("warm"):
                    env["AI_PROVIDER_MODEL_CACHE"] = str(warm_cache)
                if variant == "warm, full exit":
                    env["AI_PROVIDER_RUNTIME_FULL_EXIT"] = "1"
                shutil.rmtree(root / "out", ignore_errors=True)
                figures[variant].append(_run_once(spec, root, env))
                if variant in LOAD_ONLY:
                    if variant == "cold":
                        env["AI_PROVIDER_MODEL_CACHE"] = str(root / f"cold-cache-load-{index}")
                    figures[f"{variant} (load only)"].append(_load_only(model, server.url, root, env))
        for variant in VARIANTS:
            expected = {"off": "off", "cold": "miss"}.get(variant, "hit")
            for runs in (figures[variant], figures.get(f"{variant} (load only)", [])):
                assert all(run["cache"] == expected for run in runs), (variant, runs)
        return figures, load_before, list(os.getloadavg())
    finally:
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
    ratio = warm / cold
    fast_exit, full_exit = _median(figures["warm"], "exit_s"), _median(figures["warm, full exit"], "exit_s")
    met = "met" if ratio <= 0.2 else "**not met**"
    lo_cold = _median(figures["cold (load only)"], "load_s")
    lo_warm = _median(figures["warm (load only)"], "load_s")
    lo_off = _median(figures["off (load only)"], "load_s")
    lo_met = "met" if lo_warm <= 0.2 * lo_cold else "not met"
    loads = " / ".join(f"{x:.1f}" for x in before) + " before, " + " / ".join(f"{x:.1f}" for x in after)
    return "\n".join(
        [
            "`.venv/bin/python benchmarks/bench_runtime_start.py` "
            f"({rounds} interleaved rounds, medians; a fresh runtime process per figure, a real `mlflow "
            "server` on loopback, a registered HistGradientBoosting churn model saved with cloudpickle, a "
            "one-batch input of 5,000 rows).",
            "",
            machine_line() + f" Machine load (1/5/15 min): {loads} after.",
            "",
            *rows,
            "",
            f"- **Must reach: a warm model load at most 1/5 of a cold load: {met}.** Warm "
            f"{warm:.2f} s against cold {cold:.2f} s ({ratio:.2f}x; against no cache {off:.2f} s, "
            f"{warm / off:.2f}x).",
            f"- With scikit-learn already imported (the flavour's library, paid by any process that "
            f"predicts with it): `load_model` takes {lo_warm:.2f} s warm against {lo_cold:.2f} s cold "
            f"({lo_warm / lo_cold:.2f}x, 1/5 {lo_met}) and {lo_off:.2f} s without a cache.",
            f"- Exit after the result is written: {fast_exit:.2f} s with `os._exit` against "
            f"{full_exit:.2f} s with the interpreter's normal teardown (`AI_PROVIDER_RUNTIME_FULL_EXIT=1`).",
            "- Why the 1/5 is not reached in a fresh process: a hit downloads nothing, imports no "
            "MLflow (the version is looked up with one REST call), checks the entry's sha256 "
            "checksums and unpickles the estimator; what is left is scikit-learn's own import "
            "(`import sklearn.ensemble`, about 0.8 s of scipy and scikit-learn modules here) and the "
            "unpickling, which every process that predicts with the model pays and which is most of a "
            "cold load too. The figure with scikit-learn imported first shows what the cache itself "
            "removes."
            if ratio > 0.2
            else "- A hit downloads nothing, imports no MLflow and checks the entry's sha256 checksums.",
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
