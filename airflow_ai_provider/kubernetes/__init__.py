"""Kubernetes pods of AI jobs, and the ``[ai_provider]`` settings that shape them.

Secure defaults are in :mod:`.pod_defaults`, checks of the user's pod arguments in :mod:`.pod_checks`,
the task's labels, annotations and environment in :mod:`.pod_env`, and plain words for a failed pod
in :mod:`.pod_failures`.

Settings (Airflow config section ``[ai_provider]``, env ``AIRFLOW__AI_PROVIDER__<OPTION>``):

- ``default_resources_<job>`` (``infer``, ``train``, ``validate``, ``evaluate``, ``drift``): JSON
  ``{"requests": {...}, "limits": {...}}`` for the main container when the operator's
  ``container_resources`` leaves a resource out;
- ``gpu_node_selector``: JSON node selector added to pods that ask for GPUs (``gpus=``);
- ``run_as_user``: the non-root uid (and gid, fsGroup) of the runtime image, default 1000;
- ``scratch_size_limit``: ``sizeLimit`` of the ``/tmp`` emptyDir, e.g. ``20Gi`` (default none).
"""

from __future__ import annotations

import json

from airflow_ai_provider.config import CONFIG_SECTION
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.kubernetes.pod_checks import node_selector_dict, parse_quantity, resources_dict
from airflow_ai_provider.kubernetes.pod_defaults import DEFAULT_RESOURCES, RUNTIME_UID

__all__ = [
    "configured_gpu_node_selector",
    "configured_resources",
    "configured_run_as_user",
    "configured_scratch_size_limit",
]


def _option(name: str) -> str:
    from airflow.configuration import conf

    return (conf.get(CONFIG_SECTION, name, fallback="") or "").strip()


def _where(name: str) -> str:
    return f"[{CONFIG_SECTION}] {name} (AIRFLOW__{CONFIG_SECTION.upper()}__{name.upper()})"


def configured_resources(job: str) -> dict[str, dict[str, str]]:
    """Default resources for ``job``: ``[ai_provider] default_resources_<job>``, else the built-in ones."""
    name = f"default_resources_{job}"
    text = _option(name)
    if not text:
        return DEFAULT_RESOURCES.get(job, DEFAULT_RESOURCES["infer"])
    try:
        value = json.loads(text)
    except ValueError:
        raise AiProviderConfigError(
            f'{_where(name)} is not JSON: write e.g. {{"requests": {{"cpu": "1", "memory": "2Gi"}}, '
            '"limits": {"memory": "4Gi"}}'
        ) from None
    return resources_dict(value, field=_where(name))


def configured_gpu_node_selector() -> dict[str, str]:
    """Node selector for GPU pods from ``[ai_provider] gpu_node_selector`` (JSON), default none."""
    return node_selector_dict(_option("gpu_node_selector"), _where("gpu_node_selector"))


def configured_run_as_user() -> int:
    """The runtime image's non-root uid from ``[ai_provider] run_as_user``, default 1000."""
    text = _option("run_as_user") or str(RUNTIME_UID)
    if not text.isdigit() or int(text) == 0:
        raise AiProviderConfigError(f"{_where('run_as_user')}={text!r}: give a non-root uid such as 1000")
    return int(text)


def configured_scratch_size_limit() -> str | None:
    """``sizeLimit`` of the ``/tmp`` emptyDir from ``[ai_provider] scratch_size_limit``, default none."""
    text = _option("scratch_size_limit")
    if text:
        parse_quantity(text, _where("scratch_size_limit"))
    return text or None
