"""A batch-inference pod with ``gpus=`` asks the scheduler for the GPUs; the device it ran on is tagged.

No Kubernetes API server can run here: pods come from ``build_pod_request_obj(dry_run=True)`` and are
validated strictly against the Kubernetes OpenAPI schema, as in ``test_pod_security``.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from airflow_ai_provider.runtime.contract import Tag
from tests.unit.kubernetes.test_pod_security import K8S_VERSION, _context, _env, _infer, _manifest, _operators

#: What the NVIDIA device plugin and container runtime set for the GPUs they allocate: a pod that set
#: them itself would see every GPU of the node ("all") or one it was not given.
DEVICE_PLUGIN_ENV = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def test_batch_inference_with_one_gpu_gets_the_limit_toleration_and_node_selector_but_no_device_env(
    monkeypatch,
):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__GPU_NODE_SELECTOR", '{"nvidia.com/gpu.present": "true"}')
    spec = _operators()["infer"][1]
    op = _infer(execution_mode="kubernetes", gpus=1, batch_memory_mb=256, batch_size=64)

    manifest = _manifest(op, spec, _context())

    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]
    main = pod["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in main["resources"].get("requests", {})  # Kubernetes takes the limit
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert not set(DEVICE_PLUGIN_ENV) & set(_env(main))


@pytest.mark.parametrize("gpus", [None, 0])
def test_batch_inference_without_gpus_asks_for_none(gpus, monkeypatch):
    monkeypatch.setenv("AIRFLOW__AI_PROVIDER__GPU_NODE_SELECTOR", '{"nvidia.com/gpu.present": "true"}')
    manifest = _manifest(_infer(execution_mode="kubernetes", gpus=gpus), _operators()["infer"][1], _context())

    pod = manifest["spec"]
    assert not any("/" in name for name in pod["containers"][0]["resources"].get("limits", {}))
    assert not pod.get("tolerations") and not pod.get("nodeSelector")


def test_the_device_the_model_ran_on_becomes_a_tag_of_the_task_run():
    op = _infer()
    result = {"model": {"name": "churn", "version": "3", "device": "cuda:0", "visible_gpus": ["0"]}}

    assert op.result_tags(result)[Tag.DEVICE] == "cuda:0"
    # A result from a runtime image that does not report the device: no tag rather than a guess.
    assert Tag.DEVICE not in op.result_tags({"model": {"name": "churn", "version": "3"}})
