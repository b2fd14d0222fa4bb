"""Secure defaults for the pods of AI jobs, as pure functions on pod manifests (plain dicts).

:func:`secure_pod` fills in what the user left empty and never overwrites what they set, whether
through operator arguments, ``full_pod_spec``, a pod template or a pod mutation hook:

- pod ``securityContext``: ``runAsNonRoot``, ``runAsUser``/``runAsGroup``/``fsGroup`` (the runtime
  image's non-root user, 1000), ``seccompProfile: RuntimeDefault``;
- main container and XCom sidecar ``securityContext``: no privilege escalation, read-only root
  filesystem, all capabilities dropped, non-root;
- an ``emptyDir`` mounted at ``/tmp`` for scratch space, and ``TMPDIR``/cache variables pointing there;
- resource requests and limits (per job type), GPU limits with a toleration and node selector;
- the lookup labels, annotations and environment of :mod:`.pod_env`, where the pod sets none.
"""

from __future__ import annotations

import copy
from typing import Any

from airflow_ai_provider.kubernetes.pod_checks import GpuRequest, parse_quantity

RUNTIME_UID = 1000
SCRATCH_VOLUME = "ai-scratch"
SCRATCH_PATH = "/tmp"
XCOM_SIDECAR_NAME = "airflow-xcom-sidecar"

#: Built-in resources per job type; ``[ai_provider] default_resources_<job>`` replaces them.
DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "infer": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "train": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
    "validate": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "evaluate": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "drift": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
}
#: Limits for the XCom sidecar (it only sleeps until the result is read) when it has none.
SIDECAR_RESOURCES = {"limits": {"cpu": "100m", "memory": "50Mi"}}
#: Scratch locations for libraries that write caches (all under the ``/tmp`` emptyDir).
SCRATCH_ENV = {
    "TMPDIR": SCRATCH_PATH,
    "XDG_CACHE_HOME": f"{SCRATCH_PATH}/.cache",
    "MPLCONFIGDIR": f"{SCRATCH_PATH}/.config/matplotlib",
}


def pod_security_context(run_as_user: int = RUNTIME_UID) -> dict[str, Any]:
    """The pod-level security context applied by default."""
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The container-level security context applied by default to the main container and XCom sidecar."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _fill(existing: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """``existing`` with each key it lacks taken from ``defaults`` (a user's value always wins)."""
    merged = dict(existing or {})
    for key, value in defaults.items():
        if merged.get(key) is None:
            merged[key] = copy.deepcopy(value)
    return merged


def _fill_pod_security(existing: dict[str, Any] | None, run_as_user: int) -> dict[str, Any]:
    defaults = pod_security_context(run_as_user)
    if existing and existing.get("runAsUser") == 0:
        defaults.pop("runAsNonRoot")  # the user asked for root explicitly; do not make the pod unstartable
    return _fill(existing, defaults)


def _fill_container_security(existing: dict[str, Any] | None) -> dict[str, Any]:
    defaults = container_security_context()
    existing = existing or {}
    if existing.get("privileged") or existing.get("runAsUser") == 0:
        # Kubernetes refuses allowPrivilegeEscalation=false next to privileged=true; root is explicit.
        defaults.pop("allowPrivilegeEscalation")
        defaults.pop("runAsNonRoot")
    capabilities = existing.get("capabilities") or {}
    merged = _fill(existing, defaults)
    if capabilities and capabilities.get("drop") is None:
        merged["capabilities"] = {**capabilities, "drop": ["ALL"]}
    return merged


def merge_resources(
    user: dict[str, dict[str, str]] | None,
    default: dict[str, dict[str, str]],
    gpu: GpuRequest | None = None,
) -> dict[str, dict[str, str]]:
    """Resources for the main container: the user's, completed from ``default`` and ``gpu``.

    A resource the user requested or limited is theirs: a default request is added only for a
    resource the user named nowhere; a default limit only where the user set no limit, and never
    below the user's request. GPUs become limits of the vendor's resource (Kubernetes sets the
    request equal to the limit for extended resources).
    """
    user = user or {}
    requests = dict(user.get("requests") or {})
    limits = dict(user.get("limits") or {})
    for name, value in (default.get("requests") or {}).items():
        if name not in requests and name not in limits:
            requests[name] = value
    for name, value in (default.get("limits") or {}).items():
        if name in limits:
            continue
        if name in requests and parse_quantity(requests[name], name) > parse_quantity(value, name):
            value = requests[name]
        limits[name] = value
    if gpu is not None and gpu.resource not in limits:
        limits[gpu.resource] = str(gpu.count)
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def secure_pod(
    manifest: dict[str, Any],
    *,
    base_container_name: str,
    resources: dict[str, dict[str, str]],
    gpu: GpuRequest | None = None,
    gpu_node_selector: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    run_as_user: int = RUNTIME_UID,
    scratch_size_limit: str | None = None,
) -> dict[str, Any]:
    """Return a copy of ``manifest`` with the secure defaults filled in where it sets nothing.

    :param manifest: a pod as the Kubernetes API sees it (camelCase keys), main container first.
    :param resources: the main container's resources, already merged (:func:`merge_resources`).
    :param gpu: adds a ``NoSchedule`` toleration for the GPU resource and ``gpu_node_selector``.
    :param env: variables for the main container; a name the pod already sets is left alone.
    """
    pod = copy.deepcopy(manifest)
    spec = pod.setdefault("spec", {})
    metadata = pod.setdefault("metadata", {})
    containers = spec.get("containers") or []
    main = containers[0]

    spec["securityContext"] = _fill_pod_security(spec.get("securityContext"), run_as_user)
    main["securityContext"] = _fill_container_security(main.get("securityContext"))
    for container in containers[1:]:
        if container.get("name") == XCOM_SIDECAR_NAME:
            container["securityContext"] = _fill_container_security(container.get("securityContext"))
            sidecar = container.get("resources") or {}
            if not sidecar.get("limits"):
                container["resources"] = merge_resources(sidecar, SIDECAR_RESOURCES)

    mounts = main.setdefault("volumeMounts", [])
    if not any(mount.get("mountPath", "").rstrip("/") == SCRATCH_PATH for mount in mounts):
        empty_dir = {"sizeLimit": scratch_size_limit} if scratch_size_limit else {}
        spec.setdefault("volumes", []).append({"name": SCRATCH_VOLUME, "emptyDir": empty_dir})
        mounts.append({"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH})

    main_env = main.setdefault("env", [])
    present = {entry.get("name") for entry in main_env}
    for name, value in {**SCRATCH_ENV, **(env or {})}.items():
        if name not in present:
            main_env.append({"name": name, "value": value})

    main["resources"] = resources

    if gpu is not None:
        tolerations = spec.setdefault("tolerations", [])
        if not any(toleration.get("key") == gpu.resource for toleration in tolerations):
            tolerations.append({"key": gpu.resource, "operator": "Exists", "effect": "NoSchedule"})
        if gpu_node_selector:
            spec["nodeSelector"] = {**gpu_node_selector, **(spec.get("nodeSelector") or {})}

    metadata["labels"] = {**(labels or {}), **(metadata.get("labels") or {})}
    metadata["annotations"] = {**(annotations or {}), **(metadata.get("annotations") or {})}
    return pod
