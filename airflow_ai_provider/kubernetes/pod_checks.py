"""Checks on what users give the AI operators for their pods: resources, GPUs, secrets, templates.

Every check raises :class:`~airflow_ai_provider.exceptions.AiProviderConfigError` with one line that
names the field, the value and what to do. They run when the DAG is parsed (operator ``__init__``)
for literal arguments, and again on the built pod when the task starts (templates rendered, pod
template files read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow_ai_provider.credentials import is_secret_name, secret_value_kind
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.runtime.contract import RUNTIME_MODULE

#: GPU vendors and the extended resource their Kubernetes device plugin advertises.
GPU_RESOURCES: dict[str, str] = {
    "nvidia": "nvidia.com/gpu",
    "amd": "amd.com/gpu",
    "intel": "gpu.intel.com/i915",
}

# Kubernetes resource.Quantity: a signed decimal number with an optional binary (Ki..Ei), decimal
# (n, u, m, k, M, G, T, P, E) or exponent (e3) suffix.
_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip
#: Every kind of container a pod spec holds; each one's environment is checked for literal secrets.
CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")


# --------------------------------------------------------------------------------------------------
# Resources


def parse_quantity(value: Any, field: str) -> Decimal:
    """The numeric value of a Kubernetes quantity such as ``500m``, ``2``, ``4Gi``; refuse anything else."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    match = _QUANTITY.match(text)
    if not match:
        raise AiProviderConfigError(
            f"{field}={value!r} is not a Kubernetes quantity: use a number with an optional unit, "
            "e.g. cpu '500m' or '2', memory '512Mi' or '4Gi'"
        )
    number, suffix = match.group(1), match.group(2) or ""
    sign = -1 if text.startswith("-") else 1
    if suffix[:1] in ("e", "E"):
        return sign * Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    return sign * Decimal(number) * Decimal(_SUFFIX[suffix])


def resources_dict(resources: Any, field: str = "container_resources") -> dict[str, dict[str, str]]:
    """Normalise ``V1ResourceRequirements``/dict resources to ``{"requests": {...}, "limits": {...}}``.

    Every value must be a non-negative Kubernetes quantity; GPUs and other extended resources
    (names with a ``/``, e.g. ``nvidia.com/gpu``) must be whole numbers.
    """
    if resources is None:
        return {}
    if hasattr(resources, "to_dict") and not isinstance(resources, dict):
        resources = {"requests": resources.requests, "limits": resources.limits}
    if not isinstance(resources, dict):
        raise AiProviderConfigError(
            f"{field} must be a V1ResourceRequirements or a dict with 'requests'/'limits', "
            f"not {type(resources).__name__}"
        )
    unknown = set(resources) - {"requests", "limits", "claims"}
    if unknown:
        raise AiProviderConfigError(
            f"{field} has unknown key(s) {sorted(unknown)}: only 'requests' and 'limits' are allowed"
        )
    out: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        values = resources.get(section) or {}
        if not isinstance(values, dict):
            raise AiProviderConfigError(f"{field}.{section} must be a mapping such as {{'memory': '4Gi'}}")
        checked: dict[str, str] = {}
        for name, value in values.items():
            where = f"{field}.{section}.{name}"
            amount = parse_quantity(value, where)
            if amount < 0:
                raise AiProviderConfigError(f"{where}={value!r} is negative: resources must be >= 0")
            if "/" in str(name) and amount != amount.to_integral_value():
                raise AiProviderConfigError(
                    f"{where}={value!r}: extended resources such as GPUs take whole numbers"
                )
            checked[str(name)] = str(value).strip()
        if checked:
            out[section] = checked
    for name, limit in out.get("limits", {}).items():
        request = out.get("requests", {}).get(name)
        if request is not None and parse_quantity(request, "") > parse_quantity(limit, ""):
            raise AiProviderConfigError(
                f"{field}: requests.{name}={request!r} is above limits.{name}={limit!r}; "
                "a request cannot exceed its limit"
            )
    return out


# --------------------------------------------------------------------------------------------------
# GPUs


@dataclass(frozen=True)
class GpuRequest:
    """GPUs for the main container: ``count`` devices of ``resource`` (e.g. ``nvidia.com/gpu``)."""

    count: int
    vendor: str

    @property
    def resource(self) -> str:
        return GPU_RESOURCES[self.vendor]


def parse_gpus(gpus: Any) -> GpuRequest | None:
    """Turn ``gpus=1`` or ``gpus={"count": 2, "vendor": "amd"}`` into a :class:`GpuRequest`."""
    if gpus is None or gpus == 0:
        return None
    if isinstance(gpus, bool):
        raise AiProviderConfigError(f"gpus={gpus!r}: give a count such as gpus=1, or gpus={{'count': 2}}")
    if isinstance(gpus, int):
        gpus = {"count": gpus}
    if not isinstance(gpus, dict):
        raise AiProviderConfigError(
            f"gpus={gpus!r}: give a count such as gpus=1, or gpus={{'count': 2, 'vendor': 'nvidia'}}"
        )
    unknown = set(gpus) - {"count", "vendor"}
    if unknown:
        raise AiProviderConfigError(f"gpus has unknown key(s) {sorted(unknown)}: use 'count' and 'vendor'")
    count = gpus.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise AiProviderConfigError(f"gpus count={count!r}: must be a whole number >= 0")
    vendor = str(gpus.get("vendor", "nvidia")).strip().lower()
    if vendor not in GPU_RESOURCES:
        known = ", ".join(sorted(GPU_RESOURCES))
        raise AiProviderConfigError(
            f"gpus vendor={gpus.get('vendor')!r} is unknown: use one of {known}, or set the device "
            "plugin's resource in container_resources limits"
        )
    return GpuRequest(count, vendor) if count else None


def node_selector_dict(value: Any, field: str) -> dict[str, str]:
    """A node selector given as a dict (or JSON text in the config): string keys and values."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise AiProviderConfigError(
                f'{field}={value!r} is not JSON: write e.g. {{"nvidia.com/gpu.present": "true"}}'
            ) from None
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, bool)) for v in value.values()):
        raise AiProviderConfigError(f"{field} must map label names to values, e.g. {{'pool': 'gpu'}}")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


# --------------------------------------------------------------------------------------------------
# Secrets


def _env_entries(env_vars: Any) -> list[tuple[str, Any, bool]]:
    """``(name, literal value, has value_from)`` for each entry of KPO-style ``env_vars``."""
    if isinstance(env_vars, dict):
        return [(str(name), value, False) for name, value in env_vars.items()]
    entries = []
    for entry in env_vars if isinstance(env_vars, list) else []:
        if isinstance(entry, dict):
            entries.append(
                (
                    str(entry.get("name")),
                    entry.get("value"),
                    bool(entry.get("valueFrom") or entry.get("value_from")),
                )
            )
        elif hasattr(entry, "name"):
            entries.append(
                (str(entry.name), getattr(entry, "value", None), bool(getattr(entry, "value_from", None)))
            )
    return entries


def check_env_literals(env_vars: Any, where: str = "env_vars") -> None:
    """Refuse a secret given as a literal value: it would sit in the pod spec for anyone who reads pods.

    A value is refused when its variable's name is secret (:func:`~airflow_ai_provider.credentials.
    is_secret_name`, templated values too: they render to literals) or when the value itself looks
    like a secret (:func:`~airflow_ai_provider.credentials.secret_value_kind`: an AWS access key id,
    a private key, a URI with a password, ...). The message never shows the value.
    """
    for name, value, has_ref in _env_entries(env_vars):
        if has_ref or value in (None, ""):
            continue
        secret_name = is_secret_name(name)
        kind = None if secret_name else secret_value_kind(value)
        if secret_name or kind:
            looks = f" (its value looks like {kind})" if kind else ""
            raise AiProviderConfigError(
                f"{where}: {name} is given as a literal value{looks}; secrets must come by reference: "
                f"secrets=[Secret('env', '{name}', '<k8s-secret>', '<key>')], env_from=, or a service account"
            )


def check_pod_env(pod: Any, where: str) -> None:
    """:func:`check_env_literals` on every container of ``pod``: main, sidecars, init and ephemeral."""
    for kind, container in _all_containers(pod):
        label = "container" if kind == "containers" else kind.removesuffix("s").replace("C", " c")
        check_env_literals(container.get("env") or [], where=f"{where} {label} {container.get('name')!r} env")


# --------------------------------------------------------------------------------------------------
# Pod templates and the built pod


def pod_manifest(pod: Any) -> dict[str, Any]:
    """``pod`` as the Kubernetes API sees it (camelCase keys): a ``V1Pod`` is serialised, ``None`` is ``{}``."""
    if pod is None:
        return {}
    if not isinstance(pod, dict):
        from kubernetes.client import ApiClient

        pod = ApiClient().sanitize_for_serialization(pod)
    return pod


def pod_containers(pod: Any) -> list[dict[str, Any]]:
    """The ``containers`` of ``pod`` (a manifest or a ``V1Pod``), main container first."""
    return list((pod_manifest(pod).get("spec") or {}).get("containers") or [])


def _all_containers(pod: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, container)`` for every container of ``pod`` (a manifest or a ``V1Pod``)."""
    spec = pod_manifest(pod).get("spec") or {}
    return [
        (kind, container)
        for kind in CONTAINER_KINDS
        for container in spec.get(kind) or []
        if isinstance(container, dict)
    ]


def check_pod_template(pod: Any, base_container_name: str, where: str = "pod template") -> None:
    """The template's first container must be KPO's main container (the XCom sidecar mounts onto it),
    and no container of it may get a secret as a literal value."""
    check_pod_env(pod, where)
    containers = pod_containers(pod)
    if containers and containers[0].get("name") not in (None, base_container_name):
        names = [c.get("name") for c in containers]
        raise AiProviderConfigError(
            f"{where} puts container {containers[0].get('name')!r} first (containers: {names}); the job's "
            f"container {base_container_name!r} (base_container_name) must be containers[0]"
        )


def check_built_pod(manifest: dict[str, Any], base_container_name: str, job: str) -> None:
    """Refuse a pod whose main container moved, does not run the job runtime, or carries a literal secret."""
    containers = pod_containers(manifest)
    check_pod_template(manifest, base_container_name, where="the pod")
    if [c.get("name") for c in containers].count(base_container_name) != 1:
        raise AiProviderConfigError(
            f"the pod has {[c.get('name') for c in containers]} containers: exactly one, the first, must be "
            f"named {base_container_name!r}; rename the template's extra containers"
        )
    main = containers[0]
    command = [str(part) for part in (main.get("command") or []) + (main.get("args") or [])]
    runs_runtime = (
        len(command) >= 4
        and command[0].rsplit("/", 1)[-1].startswith("python")
        and command[1:3] == ["-m", RUNTIME_MODULE]
        and command[3] == job
    )
    if not runs_runtime:
        shown = " ".join(command)[:120] or "the image's entrypoint"
        raise AiProviderConfigError(
            f"the pod's main container runs {shown!r}, not 'python -m {RUNTIME_MODULE} {job}': AI "
            "operators set the command themselves; drop cmds/arguments and the template's command"
        )
    check_pod_env(manifest, where="the pod's")
