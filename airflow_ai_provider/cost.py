"""Cost estimates of AI tasks: resources to CPU-, memory- and GPU-seconds, priced, summed per DAG run.

A task's usage comes from one of two places (see ``docs/observability.md``, section *Cost*):

- **kubernetes mode**: the main container's declared resources (each resource's request, else its
  limit) times the container's run time (``startedAt`` to ``finishedAt`` of its terminated state,
  else the runtime's own ``duration_s``). GPUs are the vendors' extended resources
  (``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915``).
- **local mode**: what the runtime subprocess used, as the kernel counted it when it was reaped
  (``wait4``): user + system CPU seconds of the runtime and the processes it waited for, and its peak
  RSS times its wall seconds. Declared ``container_resources`` apply to pods only and are not used.

Memory is counted in GiB (2**30 bytes). The price is ``[ai_provider] cost_per_cpu_hour``,
``cost_per_gb_memory_hour`` and ``cost_per_gpu_hour`` in ``cost_currency``; the default prices are 0,
so the seconds are recorded and the estimate is 0 until a deployment sets its prices.

The task's MLflow run gets the metrics of its last successful try (a retry overwrites them, so a
task counts once). The DAG run's parent run gets their sum, recomputed from the task runs' metrics by
a bounded search each time a task finishes, never read-modify-written: its ``step`` is the number of
task runs summed and its timestamp the time the search started, so MLflow's latest metric (highest
step, then timestamp) is the sum that saw the most tasks, and of those the newest, whatever order
concurrent writers finish in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.hooks.mlflow import filter_value
from airflow_ai_provider.hooks.mlflow_entities import Metric, RunTag
from airflow_ai_provider.kubernetes.pod_checks import GPU_RESOURCES, parse_quantity
from airflow_ai_provider.mlflow_runs import dag_run_tags, find_runs
from airflow_ai_provider.runtime.contract import Tag

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.mlflow_runs import RunIdentity, TaskRun

#: MLflow metric names, on a task's run and (summed) on its DAG run's parent run.
CPU_SECONDS = "cost.cpu_seconds"
MEMORY_GB_SECONDS = "cost.memory_gb_seconds"
GPU_SECONDS = "cost.gpu_seconds"
ESTIMATE = "cost.estimate"
#: On the parent run only: how many task runs its sums cover.
TASKS = "cost.tasks"
#: MLflow tag with the currency of ``cost.estimate``.
CURRENCY_TAG = "ai.cost_currency"
#: Key of the cost in the Asset event extra and in the task's result.
EVENT_KEY = "cost"
#: Task runs read per page, and pages at most, when the parent's sums are recomputed.
_PAGE_SIZE = 1000
_MAX_PAGES = 20
_GIB = Decimal(2**30)
_PRICE_OPTIONS = ("cost_per_cpu_hour", "cost_per_gb_memory_hour", "cost_per_gpu_hour")


@dataclass(frozen=True)
class Usage:
    """Resource-seconds one job (or a task's jobs together) used."""

    cpu_seconds: float = 0.0
    memory_gb_seconds: float = 0.0
    gpu_seconds: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.cpu_seconds + other.cpu_seconds,
            self.memory_gb_seconds + other.memory_gb_seconds,
            self.gpu_seconds + other.gpu_seconds,
        )


@dataclass(frozen=True)
class Prices:
    """Prices per hour of one CPU core, one GiB of memory and one GPU, in ``currency``."""

    cpu_hour: float = 0.0
    gb_memory_hour: float = 0.0
    gpu_hour: float = 0.0
    currency: str = "USD"

    def estimate(self, usage: Usage) -> float:
        """The cost of ``usage`` at these prices."""
        total = (
            usage.cpu_seconds * self.cpu_hour
            + usage.memory_gb_seconds * self.gb_memory_hour
            + usage.gpu_seconds * self.gpu_hour
        )
        return total / 3600.0


def configured_prices() -> Prices:
    """The prices set in ``[ai_provider]`` (env ``AIRFLOW__AI_PROVIDER__COST_PER_CPU_HOUR`` and so on).

    :raises AiProviderConfigError: a price is not a non-negative number.
    """
    from airflow.configuration import conf

    from airflow_ai_provider.config import CONFIG_SECTION

    values: list[float] = []
    for option in _PRICE_OPTIONS:
        raw = str(conf.get(CONFIG_SECTION, option, fallback="0") or "0").strip()
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise AiProviderConfigError(
                f"invalid [ai_provider] {option} (AIRFLOW__AI_PROVIDER__{option.upper()}) {raw!r}: use a "
                "non-negative number, the price of one unit for one hour"
            )
        values.append(value)
    currency = str(conf.get(CONFIG_SECTION, "cost_currency", fallback="USD") or "USD").strip()
    return Prices(*values, currency=currency)


# --------------------------------------------------------------------------------------------------
# Usage from a pod or a local process


def declared_resources(resources: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """CPU cores, GiB of memory and GPUs a container declares: each resource's request, else its limit.

    :param resources: ``{"requests": {...}, "limits": {...}}`` with Kubernetes quantities.
    """
    resources = resources or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}

    def amount(name: str) -> Decimal:
        value = requests.get(name, limits.get(name))
        return Decimal(0) if value is None else parse_quantity(value, f"resources.{name}")

    gpus = sum((amount(name) for name in GPU_RESOURCES.values()), Decimal(0))
    return float(amount("cpu")), float(amount("memory") / _GIB), float(gpus)


def pod_usage(resources: Mapping[str, Any] | None, seconds: float) -> Usage:
    """The usage of a container with ``resources`` that ran ``seconds``."""
    cpus, memory_gb, gpus = declared_resources(resources)
    return Usage(cpus * seconds, memory_gb * seconds, gpus * seconds)


def container_run_seconds(pod: Mapping[str, Any] | None, container: str) -> float | None:
    """Seconds ``container`` of ``pod`` (a serialized ``V1Pod``) ran, from its terminated state."""
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        terminated = ((status.get("state") or {}).get("terminated") or {}) if status else {}
        if status.get("name") != container or not terminated:
            continue
        started, finished = terminated.get("startedAt"), terminated.get("finishedAt")
        if started and finished:
            span = _instant(finished) - _instant(started)
            return max(span, 0.0)
    return None


def _instant(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def result_seconds(result: Mapping[str, Any] | None) -> float:
    """The job's own run time (``metrics.duration_s`` of the runtime's result); 0 when absent."""
    value = ((result or {}).get("metrics") or {}).get("duration_s")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def process_usage(rusage: Any, wall_seconds: float) -> Usage:
    """The usage of a local runtime: the CPU seconds it used, and its peak RSS times its wall seconds.

    :param rusage: the ``resource.struct_rusage`` of the reaped process (``ru_maxrss`` in KiB on Linux).
    """
    memory_gb = rusage.ru_maxrss * 1024 / float(_GIB)
    return Usage(rusage.ru_utime + rusage.ru_stime, memory_gb * wall_seconds, 0.0)


def job_pod_usage(
    built: Mapping[str, Any] | None, final: Mapping[str, Any] | None, container: str, result: Any
) -> Usage:
    """The usage of one job's pod: the resources of ``container`` in the pod as built (else as the
    cluster returned it) times its run time (the final pod's status, else the job's result).

    :param built: the serialized pod the operator sent; ``None`` after a deferral.
    :param final: the serialized pod as last read from the cluster.
    """
    pod = built or final or {}
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == container]
    resources = containers[0].get("resources") if containers else None
    seconds = container_run_seconds(final, container)
    if seconds is None:
        seconds = result_seconds(result if isinstance(result, dict) else None)
    return pod_usage(resources, seconds)


# --------------------------------------------------------------------------------------------------
# Records


def cost_metrics(usage: Usage, prices: Prices) -> dict[str, float]:
    """The task run's cost metrics for ``usage``."""
    return {
        CPU_SECONDS: round(usage.cpu_seconds, 3),
        MEMORY_GB_SECONDS: round(usage.memory_gb_seconds, 3),
        GPU_SECONDS: round(usage.gpu_seconds, 3),
        ESTIMATE: round(prices.estimate(usage), 6),
    }


def cost_extra(metrics: Mapping[str, float], currency: str) -> dict[str, Any]:
    """The cost as it goes in an Asset event's extra and the task's result."""
    return {
        "cpu_seconds": metrics[CPU_SECONDS],
        "memory_gb_seconds": metrics[MEMORY_GB_SECONDS],
        "gpu_seconds": metrics[GPU_SECONDS],
        "estimate": metrics[ESTIMATE],
        "currency": currency,
    }


def sum_task_costs(runs: Iterable[Any]) -> dict[str, float]:
    """The sums of the cost metrics over ``runs`` (those that carry them), and how many they are."""
    sums = dict.fromkeys((CPU_SECONDS, MEMORY_GB_SECONDS, GPU_SECONDS, ESTIMATE), 0.0)
    counted = 0
    for run in runs:
        metrics = run.data.metrics
        if ESTIMATE not in metrics:
            continue
        counted += 1
        for key in sums:
            sums[key] += float(metrics.get(key, 0.0))
    return {**{key: round(value, 6) for key, value in sums.items()}, TASKS: float(counted)}


def record_task_cost(hook: MlflowHook, run: TaskRun, metrics: Mapping[str, float], currency: str) -> None:
    """Log the task's cost metrics on its run (a later try of the task overwrites them)."""
    now_ms = int(time.time() * 1000)
    with hook.client() as client:
        client.log_batch(
            run.run_id,
            metrics=[Metric(key, float(value), now_ms, step=0) for key, value in metrics.items()],
            tags=[RunTag(CURRENCY_TAG, currency)],
        )


def record_dag_run_cost(hook: MlflowHook, run: TaskRun, who: RunIdentity, currency: str) -> dict[str, float]:
    """Recompute the DAG run's sums from its task runs and log them on its (elected) parent run.

    Call it after :func:`~airflow_ai_provider.mlflow_runs.finish_task_run`, which settles the parent.

    At most ``_MAX_PAGES`` searches of ``_PAGE_SIZE`` runs, each bounded by the hook's timeouts.
    :return: the sums logged, with :data:`TASKS`.
    """
    tags = {Tag.ROLE: "task", Tag.DAG_ID: who.dag_id, Tag.RUN_ID: who.run_id}
    task_filter = " and ".join(
        [
            *(f"tags.`{key}` = {filter_value(value)}" for key, value in tags.items()),
            f"metrics.`{ESTIMATE}` >= 0",
        ]
    )
    with hook.client() as client:
        started_ms = int(time.time() * 1000)
        runs: list[Any] = []
        page_token: str | None = None
        for _ in range(_MAX_PAGES):
            page = client.search_runs(
                [run.experiment_id], filter_string=task_filter, max_results=_PAGE_SIZE, page_token=page_token
            )
            runs.extend(page)
            page_token = page.token
            if not page_token:
                break
        sums = sum_task_costs(runs)
        parents = find_runs(client, run.experiment_id, dag_run_tags(who))
        parent_id = parents[0].info.run_id if parents else run.parent_run_id
        step = int(sums[TASKS])
        client.log_batch(
            parent_id,
            metrics=[Metric(key, value, started_ms, step=step) for key, value in sums.items()],
            tags=[RunTag(CURRENCY_TAG, currency)],
        )
    return sums
