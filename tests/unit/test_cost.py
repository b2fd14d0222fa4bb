"""Cost estimates: declared resources and a local process's usage to resource-seconds, priced."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest

from airflow_ai_provider import cost
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.execution.local import LocalJobRunner


def test_declared_resources_take_each_request_else_its_limit_and_count_every_gpu_vendor():
    resources = {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1", "amd.com/gpu": "2"},
    }
    assert cost.declared_resources(resources) == (0.5, 2.0, 3.0)
    assert cost.declared_resources({"limits": {"cpu": "1500m", "memory": "512Mi"}}) == (1.5, 0.5, 0.0)
    assert cost.declared_resources(None) == (0.0, 0.0, 0.0)


def test_memory_in_decimal_units_is_converted_to_gib():
    (_, memory_gb, _) = cost.declared_resources({"requests": {"memory": "1G"}})
    assert memory_gb == pytest.approx(10**9 / 2**30)


def test_pod_usage_is_resources_times_seconds():
    usage = cost.pod_usage(
        {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"gpu.intel.com/i915": 1}}, 40
    )
    assert usage == cost.Usage(cpu_seconds=10.0, memory_gb_seconds=40.0, gpu_seconds=40.0)


def test_the_pods_run_time_comes_from_its_main_containers_terminated_state_else_the_result():
    pod = {
        "spec": {"containers": [{"name": "base", "resources": {"requests": {"cpu": "2"}}}]},
        "status": {
            "containerStatuses": [
                {"name": "airflow-xcom-sidecar", "state": {"running": {}}},
                {
                    "name": "base",
                    "state": {
                        "terminated": {
                            "startedAt": "2026-12-01T10:00:00Z",
                            "finishedAt": "2026-12-01T10:01:30Z",
                        }
                    },
                },
            ]
        },
    }
    assert cost.container_run_seconds(pod, "base") == 90.0
    assert cost.job_pod_usage(None, pod, "base", {}).cpu_seconds == 180.0
    running = {**pod, "status": {}}
    result = {"metrics": {"duration_s": 12.5}}
    assert cost.container_run_seconds(running, "base") is None
    assert cost.job_pod_usage(running, running, "base", result).cpu_seconds == 25.0


def test_process_usage_is_cpu_seconds_and_peak_rss_times_wall_seconds():
    rusage = SimpleNamespace(ru_utime=1.5, ru_stime=0.5, ru_maxrss=512 * 1024)  # 512 MiB peak
    assert cost.process_usage(rusage, 10.0) == cost.Usage(2.0, 5.0, 0.0)


def test_the_estimate_prices_each_resource_per_hour():
    prices = cost.Prices(cpu_hour=0.036, gb_memory_hour=0.0036, gpu_hour=3.6, currency="EUR")
    metrics = cost.cost_metrics(cost.Usage(100.0, 1000.0, 10.0), prices)
    assert metrics == {
        cost.CPU_SECONDS: 100.0,
        cost.MEMORY_GB_SECONDS: 1000.0,
        cost.GPU_SECONDS: 10.0,
        cost.ESTIMATE: pytest.approx(0.001 + 0.001 + 0.01),
    }
    assert cost.cost_extra(metrics, "EUR")["currency"] == "EUR"


def test_default_prices_are_zero_in_usd_and_configured_prices_are_read(monkeypatch):
    assert cost.configured_prices() == cost.Prices(0.0, 0.0, 0.0, "USD")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_CPU_HOUR", "0.04")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_GPU_HOUR", "2.5")
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_CURRENCY", "EUR")
    assert cost.configured_prices() == cost.Prices(0.04, 0.0, 2.5, "EUR")


@pytest.mark.parametrize("value", ["cheap", "-1", "nan", "inf"])
def test_a_price_that_is_not_a_non_negative_number_is_one_line_naming_the_option(monkeypatch, value):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__COST_PER_GB_MEMORY_HOUR", value)
    with pytest.raises(AiProviderConfigError) as err:
        cost.configured_prices()
    message = str(err.value)
    assert message.startswith("invalid [ai_provider] cost_per_gb_memory_hour (AIRFLOW__AI_PROVIDER__COST_PER")
    assert "\n" not in message


def test_the_dag_run_sum_counts_only_task_runs_that_carry_a_cost():
    def run(metrics):
        return SimpleNamespace(data=SimpleNamespace(metrics=metrics))

    priced = {cost.CPU_SECONDS: 2.0, cost.MEMORY_GB_SECONDS: 1.0, cost.GPU_SECONDS: 0.0, cost.ESTIMATE: 0.5}
    sums = cost.sum_task_costs([run(priced), run(priced), run({"rows_out": 10.0})])
    assert sums == {
        cost.CPU_SECONDS: 4.0,
        cost.MEMORY_GB_SECONDS: 2.0,
        cost.GPU_SECONDS: 0.0,
        cost.ESTIMATE: 1.0,
        cost.TASKS: 2.0,
    }


def test_the_local_runner_keeps_the_runtimes_cpu_time_and_peak_memory(tmp_path):
    """A real child process that holds 200 MiB and spins the CPU; the runner reaps it with wait4."""
    script = (
        "import json, os, time\n"
        "block = bytearray(200 * 1024 * 1024)\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "open(os.environ['AI_PROVIDER_RESULT_PATH'], 'w').write(json.dumps({'status': 'success'}))\n"
    )
    runner = LocalJobRunner(
        [sys.executable, "-c", script], {}, logging.getLogger("test"), scratch_root=tmp_path
    )
    assert runner.run() == {"status": "success"}
    usage = cost.process_usage(runner.rusage, runner.wall_seconds)
    assert runner.rusage.ru_utime + runner.rusage.ru_stime >= 0.3
    assert runner.rusage.ru_maxrss * 1024 >= 200 * 2**20
    assert usage.memory_gb_seconds >= 200 / 1024 * runner.wall_seconds * 0.99
    assert usage.gpu_seconds == 0.0
