"""Benchmark of shard scaling: one 2M-row input scored as 1, 2 and 4 runtime shards started together.

Run with ``.venv/bin/python benchmarks/bench_shard_scaling.py``
from the repository root. It registers the model of ``bench_batch_inference.py`` (20-feature
HistGradientBoostingClassifier, local SQLite MLflow store under ``benchmarks/.work/``), writes 2M rows
in 16 row groups (so 1, 2 and 4 shards get equal work units) and, in interleaved rounds, starts every
shard's runtime process at the same moment, as the operator's mapped shards start, and waits for all.
Each shard count runs with the model's own thread count (OpenMP: one thread per core) and with its
threads capped to ``cores // shards`` (the runtime's ``model_threads``). It records the wall clock
from start to the last exit, the aggregate rows/s and the data phase (the shards' ``stream_s``
spans, first start to last end), and replaces the ``## Shard scaling`` section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_batch_inference import (
    QUIET_TIMEOUT_S,
    REPO,
    WORK,
    busy_starts,
    machine,
    reset_registry,
    runtime_command,
    train_and_register,
    wait_for_quiet,
    write_input,
)
from bench_docs import replace_section

ROWS = 2_000_000
ROW_GROUP = 125_000
SHARDS = (1, 2, 4)
COMMAND = ".venv/bin/python benchmarks/bench_shard_scaling.py"


WHY = [
    "Why: one shard already keeps both cores busy (scikit-learn's tree predictor runs an OpenMP team of "
    "one thread per core), so on this machine more shards cannot add throughput; they can only lose "
    "it. Uncapped, N shards run 2N model threads on 2 cores: an OpenMP parallel region ends when its "
    "slowest thread does, and a thread descheduled for another process holds up its whole team (its "
    "other threads spin, then sleep), so every region pays for the oversubscription. Capped to "
    "`cores // shards` threads (`model_threads`), the shards share the cores without that and the data "
    "phase comes back close to one shard's. The wall clock still grows with the shard count: each "
    "process pays its own interpreter start, imports and model load (about 3 s of CPU) on the same 2 "
    "cores.",
    "",
    "What to set: shards that run side by side on one machine (local mode, several mapped shards on "
    "one worker) should set `model_threads` to `cores // concurrent shards`; more concurrent shards "
    "than cores do not pay off for a model that already uses every core. Shards pay off when each has "
    "cores of its own (kubernetes mode, one pod per shard). scikit-learn already sizes its OpenMP team "
    "within a container's CPU quota; a library that counts the node's CPUs instead (some BLAS, "
    "xgboost, torch builds) needs `model_threads` set to the pod's CPU limit. The runtime does not cap "
    "threads by itself: it cannot know how many shards share its machine.",
]


def configurations(cores: int) -> list[tuple[int, int | None]]:
    """(shards, model threads) pairs: each shard count uncapped, and capped when the cap changes it."""
    found: list[tuple[int, int | None]] = []
    for shards in SHARDS:
        found.append((shards, None))
        if shards > 1:
            found.append((shards, max(1, cores // shards)))
    return found


def run_shards(version: str, path: Path, shards: int, threads: int | None) -> dict[str, Any]:
    """Start ``shards`` runtime processes at once over ``path``; their figures once the last exits."""
    params = {} if threads is None else {"model_threads": threads}
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        out, results = Path(scratch) / "out", [Path(scratch) / f"result-{i}.json" for i in range(shards)]
        commands = [
            runtime_command(version, path, out, results[i], (i, shards), **params) for i in range(shards)
        ]
        started = time.perf_counter()
        processes = [
            subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for command in commands
        ]
        errors = [process.communicate()[1] for process in processes]
        wall = time.perf_counter() - started
        failed = [(p.returncode, err) for p, err in zip(processes, errors, strict=True) if p.returncode]
        if failed:
            raise SystemExit(f"a shard failed ({failed[0][0]}):\n{failed[0][1]}")
        payloads = [json.loads(result.read_text()) for result in results]
    metrics = [payload["metrics"] for payload in payloads]
    rows = sum(payload["rows_out"] for payload in payloads)
    if rows != ROWS:
        raise SystemExit(f"{shards} shards wrote {rows} rows, not {ROWS}")
    # The data phases overlap in part (loads end at different times): from the first shard's first
    # batch to the last shard's published file.
    ends = [payload["timings"]["ended_at"] for payload in payloads]
    stream = max(ends) - min(end - m["stream_s"] for end, m in zip(ends, metrics, strict=True))
    return {
        "wall_s": wall,
        "rows_per_s": ROWS / wall,
        "stream_s": stream,
        "stream_rows_per_s": ROWS / stream,
        "load_s": max(m["load_model_s"] for m in metrics),
        "peak_rss_mb": sum(m["peak_rss_mb"] for m in metrics),
    }


def render(figures: dict[tuple[int, int | None], dict[str, Any]], rounds: int, meta: dict[str, Any]) -> str:
    """The section body: one row per configuration, then what the figures say."""
    cores = meta["cores"]
    base = figures[(1, None)]
    lines = [
        f"The same {ROWS:,} rows (one Parquet file, {ROWS // ROW_GROUP} row groups of {ROW_GROUP:,}) scored "
        "by 1, 2 and 4 runtime processes started at the same moment, each over its shard (as the "
        f"operator's mapped shards run on one worker), on this machine's {cores} cores. Model and "
        "output as in *Batch inference*. Best of "
        f"{rounds} interleaved rounds, each started once the machine was idle (or after "
        f"{QUIET_TIMEOUT_S:.0f} s). *Wall clock* runs from starting the processes to the last exit "
        "(interpreter start, imports, model load, data); *data phase* runs from the first shard's first "
        "batch to the last shard's published part file (each shard's `stream_s` placed at its end).",
        "",
        "| shards | model threads per shard | wall clock (s) | rows/s (wall clock) | data phase (s) "
        "| rows/s (data phase) | vs 1 shard (data phase) | slowest model load (s) | RSS summed (MB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (shards, threads), row in figures.items():
        label = f"{threads} (`model_threads`)" if threads else f"all ({cores}, OpenMP default)"
        lines.append(
            f"| {shards} | {label} | {row['wall_s']:.1f} | {row['rows_per_s']:,.0f} | {row['stream_s']:.2f} "
            f"| {row['stream_rows_per_s']:,.0f} | {row['stream_rows_per_s'] / base['stream_rows_per_s']:.2f}x "
            f"| {row['load_s']:.1f} | {row['peak_rss_mb']:,.0f} |"
        )
    lines += ["", *meta["notes"], "", *WHY, "", f"- Date and machine: {meta['date']}; {meta['machine']}"]
    lines += [
        f"- Load average {meta['load_before']} before, {meta['load_after']} after (shared machine: "
        f"{meta['busy']})",
        f"- Command: `{COMMAND}`",
    ]
    return "\n".join(lines)


def explain(figures: dict[tuple[int, int | None], dict[str, Any]], cores: int) -> list[str]:
    """Plain statements derived from the figures (which configuration wins and by how much)."""
    base = figures[(1, None)]
    notes = []
    for shards in SHARDS[1:]:
        free, capped = figures[(shards, None)], figures[(shards, max(1, cores // shards))]
        notes.append(
            f"- {shards} shards: data phase {free['stream_s']:.2f} s with every shard's model on all "
            f"{cores} cores ({shards * cores} model threads on {cores} cores) against "
            f"{capped['stream_s']:.2f} s capped to {max(1, cores // shards)} thread(s) a shard; wall clock "
            f"{free['wall_s']:.1f} s against {capped['wall_s']:.1f} s (1 shard: {base['wall_s']:.1f} s)."
        )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="print the section only")
    parser.add_argument("--rounds", type=int, default=2, help="measurement rounds; the best is kept")
    args = parser.parse_args()
    import datetime

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "input-shards" / "data.parquet"
    if not path.exists():
        print(f"writing {ROWS:,} rows in row groups of {ROW_GROUP:,} to {path}", flush=True)
        write_input(path, ROWS, seed=7, row_group_size=ROW_GROUP)
    reset_registry()
    print("training and registering the model", flush=True)
    version = train_and_register()
    cores = os.cpu_count() or 1
    load_before = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    figures: dict[tuple[int, int | None], dict[str, Any]] = {}
    for round_number in range(1, args.rounds + 1):
        for shards, threads in configurations(cores):
            wait_for_quiet(QUIET_TIMEOUT_S)
            row = run_shards(version, path, shards, threads)
            print(
                f"round {round_number}: {shards} shard(s), threads {threads or 'all'}: wall {row['wall_s']:.1f} s, "
                f"data phase {row['stream_s']:.2f} s",
                flush=True,
            )
            best = figures.get((shards, threads))
            if best is None or row["wall_s"] < best["wall_s"]:
                figures[(shards, threads)] = row
    meta = {
        "cores": cores,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "load_before": load_before,
        "load_after": " / ".join(f"{value:.1f}" for value in os.getloadavg()),
        "notes": explain(figures, cores),
        "busy": busy_starts(args.rounds * len(configurations(cores))),
    }
    body = render(figures, args.rounds, meta)
    print(body)
    if not args.no_doc:
        replace_section("Shard scaling", body)
    shutil.rmtree(WORK / "result.json", ignore_errors=True)


if __name__ == "__main__":
    main()
