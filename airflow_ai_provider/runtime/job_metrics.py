"""Batch-latency percentiles and peak memory of the running job, for its result and its MLflow run.

A job times its batches with one :class:`BatchClock` (:func:`batch_clock`): :meth:`BatchClock.lap`
once per batch records the seconds since the previous lap (the first lap counts from the clock's
start), so a batch's latency is everything the job spent on it: waiting for it to be read, predicting
or validating it, writing its output. :func:`summary` gives the percentiles
(:data:`PERCENTILES`, nearest rank: the smallest recorded value with at least ``p`` % of the values
at or below it) and the peak memory. The runtime runs one job per process, so the clock of the
process's job is kept here (:func:`current`); :func:`reset` forgets it.
"""

from __future__ import annotations

import math
import time

from airflow_ai_provider.runtime.memory import peak_rss_mb

#: The percentiles recorded, as metric name suffixes.
PERCENTILES = (50, 95, 99)
#: Prefix of the latency metrics: ``batch_latency_p50_s`` and so on.
PREFIX = "batch_latency"

_current: BatchClock | None = None


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values``: the value at rank ``ceil(p / 100 * n)`` of
    the sorted values (1-based), so that it is always one of them. ``values`` must not be empty."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class BatchClock:
    """Per-batch latencies of one job, in seconds (wall clock, ``time.perf_counter``)."""

    def __init__(self) -> None:
        self.laps: list[float] = []
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.last = self.started

    def lap(self) -> None:
        """Record one batch: the seconds since the previous lap, or since the clock started."""
        now = time.perf_counter()
        self.laps.append(now - self.last)
        self.last = now

    @property
    def ended_at(self) -> float:
        """Wall-clock time (``time.time()``) of the last lap, or of the start when there is none."""
        return self.started_at + (self.last - self.started)

    def summary(self) -> dict[str, float]:
        """``batch_latency_p50_s``, ``_p95_s``, ``_p99_s`` and ``_max_s``; empty without a lap."""
        if not self.laps:
            return {}
        found = {f"{PREFIX}_p{p}_s": round(percentile(self.laps, p), 6) for p in PERCENTILES}
        found[f"{PREFIX}_max_s"] = round(max(self.laps), 6)
        return found


def batch_clock() -> BatchClock:
    """A new clock for the job's batches, started now; it becomes the process's :func:`current`."""
    global _current
    _current = BatchClock()
    return _current


def current() -> BatchClock | None:
    """The clock the running job's batches were timed with, if any."""
    return _current


def reset() -> None:
    """Forget the clock of an earlier job (the runtime called in-process runs jobs one after another)."""
    global _current
    _current = None


def summary() -> dict[str, float]:
    """The job's latency percentiles (when it timed batches) and ``peak_rss_mb``, the high-water
    mark of this process's resident memory (:func:`~.memory.peak_rss_mb`), as result metrics."""
    clock = current()
    return {**(clock.summary() if clock is not None else {}), "peak_rss_mb": peak_rss_mb()}
