"""The device a loaded model ran on (``cpu``, ``cuda:0``) and the GPUs visible to the runtime.

:func:`report` looks at the model behind a pyfunc model (``get_raw_model()``, a custom
``PythonModel`` through ``unwrap_python_model()``) and then at that object's own attributes, one
level deep (a ``PythonModel`` that keeps its network in ``self.model``):

- a ``device`` attribute that is not a method (a sentence-transformers model's ``.device``, a
  ``PythonModel`` that sets ``self.device``, an estimator's ``device`` parameter such as XGBoost's;
  an integer is transformers' convention: ``-1`` the CPU, ``n`` ``cuda:n``);
- a torch module's first parameter's device, only when torch is already imported (``sys.modules``):
  reporting never imports torch;
- else ``cpu``.

The visible GPUs are the ones ``CUDA_VISIBLE_DEVICES`` names, else ``NVIDIA_VISIBLE_DEVICES`` (which
the NVIDIA container runtime sets in a pod given ``nvidia.com/gpu``): a list of indexes or UUIDs,
``["all"]``, or empty when neither is set or they say none. Looking never fails a job: anything
unexpected reports ``cpu``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: What a model that shows no device runs on.
CPU = "cpu"
#: Environment variables that name the GPUs a process may use, first one set wins.
VISIBLE_GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
_NO_GPUS = {"", "none", "void", "-1"}


def report(pyfunc: Any) -> dict[str, Any]:
    """``{"device": ..., "visible_gpus": [...]}`` for the result's model info."""
    return {"device": model_device(pyfunc), "visible_gpus": visible_gpus()}


def model_device(pyfunc: Any) -> str:
    """The device of the model behind ``pyfunc`` (see the module docstring), ``cpu`` when none shows."""
    try:
        inner = _unwrap(pyfunc)
        found = _device_of(inner)
        if found is None:
            attributes = vars(inner).values() if hasattr(inner, "__dict__") else ()
            found = next((device for device in map(_device_of, attributes) if device), None)
    except Exception:  # a report never fails the job
        return CPU
    return found or CPU


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` (else ``NVIDIA_VISIBLE_DEVICES``) names, ``[]`` for none."""
    env = os.environ if environ is None else environ
    for name in VISIBLE_GPU_VARIABLES:
        if name in env:
            value = env[name].strip()
            if value.lower() in _NO_GPUS:
                return []
            return [part.strip() for part in value.split(",") if part.strip()]
    return []


def _unwrap(pyfunc: Any) -> Any:
    """The flavor's raw model, a custom ``PythonModel``, or ``pyfunc`` itself."""
    for name in ("get_raw_model", "unwrap_python_model"):
        method = getattr(pyfunc, name, None)
        if callable(method):
            try:
                return method()
            except Exception:  # MLflow raises when the flavor has none
                continue
    return pyfunc


def _device_of(obj: Any) -> str | None:
    """``obj``'s ``device`` attribute, or a torch module's parameters' device; ``None`` if neither."""
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, list, tuple, dict)):
        return None
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.nn.Module):
        # A sentence-transformers model is a torch module too; its ``device`` is its first parameter's.
        parameter = next(iter(obj.parameters()), None)
        if parameter is not None:
            return str(parameter.device)
    device = getattr(obj, "device", None)
    if isinstance(device, bool) or callable(device):
        return None
    if isinstance(device, int):  # transformers' convention: -1 the CPU, n >= 0 the n-th CUDA device
        return CPU if device < 0 else f"cuda:{device}"
    if isinstance(device, str) or isinstance(getattr(device, "type", None), str):  # or a torch.device
        return str(device).strip() or None
    return None
