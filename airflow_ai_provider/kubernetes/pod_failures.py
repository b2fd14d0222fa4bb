"""Why an AI job's pod failed, in plain words, and whether a retry can help."""

from __future__ import annotations

from typing import Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider.credentials import scrub_text
from airflow_ai_provider.exceptions import JobFailedError
from airflow_ai_provider.kubernetes.pod_checks import pod_containers, pod_manifest


def explain_pod_failure(pod: dict[str, Any] | None, base_container_name: str) -> tuple[str, bool] | None:
    """Why a job's pod failed, from its status, as ``(one-line message, retryable)``; ``None`` if unknown."""
    if not pod:
        return None
    status = pod.get("status") or {}
    main_spec = next((c for c in pod_containers(pod) if c.get("name") == base_container_name), {})
    image = main_spec.get("image", "?")
    main = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == base_container_name), None
    )
    if status.get("reason") == "Evicted":
        return f"the pod was evicted from its node: {status.get('message', '')}".strip(), True
    if main is None:
        return None
    state = main.get("state") or {}
    last = main.get("lastState") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or last.get("terminated") or {}
    reason = waiting.get("reason") or terminated.get("reason") or ""
    # The termination message is the container's last log lines: keep URI credentials out of the error.
    message = scrub_text(" ".join(str(waiting.get("message") or terminated.get("message") or "").split()))[
        :300
    ]
    if terminated.get("reason") == "OOMKilled":
        limit = ((main_spec.get("resources") or {}).get("limits") or {}).get("memory", "none")
        return (
            f"container {base_container_name!r} was OOMKilled (exit {terminated.get('exitCode', 137)}): "
            f"it needed more memory than its limit ({limit}); raise limits.memory in container_resources "
            "or the [ai_provider] default_resources_<job> option, or use smaller batches",
            False,
        )
    if reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"):
        return (
            f"image {image!r} cannot be pulled ({reason}: {message or 'no detail'}); check the image "
            "name and tag, that the registry is reachable, and image_pull_secrets for a private registry",
            reason in ("ImagePullBackOff", "ErrImagePull"),
        )
    if reason == "CreateContainerConfigError":
        return (
            f"the container cannot be configured ({message or reason}); check that the Kubernetes "
            "secrets and config maps named in secrets=/env_from=/volumes exist in the pod's namespace",
            False,
        )
    if "No module named" in message and "airflow_ai_provider" in message:
        return (
            f"image {image!r} does not contain the job runtime ({message}); build it from the "
            "airflow-ai-provider runtime image or install 'airflow-ai-provider[runtime]' into it",
            False,
        )
    if "executable file not found" in message or reason in ("StartError", "ContainerCannotRun"):
        return (
            f"image {image!r} cannot start the job runtime ({reason}: {message or 'no detail'}); the "
            "image needs python with airflow-ai-provider[runtime] installed",
            False,
        )
    return None


def raise_pod_failure(pod: Any, base_container_name: str, job: str, error: BaseException) -> NoReturn:
    """Raise ``error`` put in plain words from the failed ``pod``'s last state (a ``V1Pod`` or ``None``).

    :raises JobFailedError: the failure may heal (an eviction, an image pull that may succeed later).
    :raises AirflowFailException: retrying cannot help (OOMKilled, a missing secret, a wrong image).
    :raises BaseException: ``error`` itself when the pod's state does not tell why.
    """
    state = pod_manifest(pod) or None
    explained = explain_pod_failure(state, base_container_name)
    if explained is None:
        raise error
    message, retryable = explained
    name = (state or {}).get("metadata", {}).get("name", "?")
    text = f"{job} job pod {name}: {message}"
    if retryable:
        raise JobFailedError(text) from error
    raise AirflowFailException(text) from error
