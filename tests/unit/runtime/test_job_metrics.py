"""The batch clock's percentiles (nearest rank) and the job's peak-memory figures."""

from __future__ import annotations

import pytest

from airflow_ai_provider.runtime import job_metrics


@pytest.fixture(autouse=True)
def _no_clock():
    job_metrics.reset()
    yield
    job_metrics.reset()


def test_nearest_rank_percentiles_of_known_latencies():
    latencies = [float(n) for n in range(100, 0, -1)]  # 1..100 s, in no particular order
    assert job_metrics.percentile(latencies, 50) == 50.0
    assert job_metrics.percentile(latencies, 95) == 95.0
    assert job_metrics.percentile(latencies, 99) == 99.0
    assert job_metrics.percentile([0.2, 0.1, 0.4, 0.3], 50) == 0.2  # rank ceil(2.0) = 2
    assert job_metrics.percentile([0.2, 0.1, 0.4, 0.3], 95) == 0.4  # rank ceil(3.8) = 4
    assert job_metrics.percentile([7.0], 99) == 7.0


def test_clock_summary_names_the_percentiles_and_the_slowest_batch():
    clock = job_metrics.batch_clock()
    clock.laps = [float(n) for n in range(1, 201)]
    assert clock.summary() == {
        "batch_latency_p50_s": 100.0,
        "batch_latency_p95_s": 190.0,
        "batch_latency_p99_s": 198.0,
        "batch_latency_max_s": 200.0,
    }


def test_laps_measure_the_time_between_batches():
    clock = job_metrics.batch_clock()
    for _ in range(3):
        clock.lap()
    assert len(clock.laps) == 3
    assert all(lap >= 0 for lap in clock.laps)
    assert clock.ended_at >= clock.started_at


def test_job_summary_has_peak_memory_and_latencies_only_when_batches_were_timed():
    without = job_metrics.summary()
    assert set(without) == {"peak_rss_mb"}
    assert without["peak_rss_mb"] > 10  # this interpreter holds more than 10 MiB
    job_metrics.batch_clock().lap()
    with_batches = job_metrics.summary()
    assert {"batch_latency_p50_s", "batch_latency_p99_s", "peak_rss_mb"} <= set(with_batches)


def test_reset_forgets_the_earlier_jobs_clock():
    job_metrics.batch_clock().lap()
    job_metrics.reset()
    assert job_metrics.current() is None
    assert "batch_latency_p50_s" not in job_metrics.summary()
