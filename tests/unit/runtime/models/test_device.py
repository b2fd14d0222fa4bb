"""The infer job reports the device its model ran on and the GPUs it could see, in its result and tags."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel

from airflow_ai_provider.runtime import infer
from airflow_ai_provider.runtime.models import device
from tests.unit.runtime.conftest import FEATURES, customers, write_parquet


class PinnedDeviceModel(PythonModel):
    """A custom pyfunc model that says where it runs, as a GPU model does after ``.to("cuda:0")``."""

    def load_context(self, context) -> None:
        self.device = "cuda:0"

    def predict(self, context, model_input, params=None):
        return np.asarray(model_input["age"], dtype="float64") * 2.0


class WrapperModel(PythonModel):
    """A custom pyfunc model that keeps the network it calls in an attribute (``self.model``)."""

    def load_context(self, context) -> None:
        self.model = SimpleNamespace(device="cuda:1")

    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


@pytest.fixture(scope="module")
def device_models(registry) -> dict[str, str]:
    """``pinned-device`` and ``wrapper-device`` registered in the runtime tests' registry (version 1)."""
    import mlflow
    from mlflow.models import infer_signature

    from tests._support.churn_sample import mlflow_uris

    frame = customers(20, seed=1)[FEATURES]
    with mlflow_uris(registry.tracking_uri), mlflow.start_run():
        for name, model in (("pinned-device", PinnedDeviceModel()), ("wrapper-device", WrapperModel())):
            mlflow.pyfunc.log_model(
                name=name,
                python_model=model,
                signature=infer_signature(frame, np.zeros(len(frame))),
                registered_model_name=name,
                pip_requirements=["mlflow"],
            )
    return {"pinned": "pinned-device", "wrapper": "wrapper-device"}


def _infer(registry, model: str, tmp_path) -> dict:
    source = write_parquet(tmp_path / "in.parquet", customers(300, seed=5))
    result = infer.run(registry.spec(model, str(source), tmp_path / "out"), log=print)
    return result.model


def test_a_python_model_with_a_device_attribute_reports_that_device_and_the_visible_gpus(
    registry, device_models, tmp_path, monkeypatch
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    model = _infer(registry, device_models["pinned"], tmp_path)

    assert (model["device"], model["visible_gpus"]) == ("cuda:0", ["0", "1"])
    assert (model["name"], model["version"]) == ("pinned-device", "1")


def test_a_python_model_reports_the_device_of_the_network_it_keeps(registry, device_models, tmp_path):
    assert _infer(registry, device_models["wrapper"], tmp_path)["device"] == "cuda:1"


def test_a_plain_scikit_learn_model_reports_cpu_and_no_gpus_without_importing_torch(
    registry, tmp_path, monkeypatch
):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    torch_before = "torch" in sys.modules

    model = _infer(registry, "churn", tmp_path)

    assert (model["device"], model["visible_gpus"]) == ("cpu", [])
    assert ("torch" in sys.modules) == torch_before


@pytest.mark.parametrize(
    ("environ", "visible"),
    [
        ({}, []),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-3f1c"}, ["GPU-3f1c"]),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, ["all"]),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
        ({"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "all"}, []),  # CUDA's own setting wins
        ({"CUDA_VISIBLE_DEVICES": " 2 , 3 "}, ["2", "3"]),
    ],
)
def test_visible_gpus_come_from_cuda_visible_devices_then_nvidia_visible_devices(environ, visible):
    assert device.visible_gpus(environ) == visible


def test_a_torch_module_reports_its_parameters_device_when_torch_is_already_imported(monkeypatch):
    """torch is not installed in the default test run: a stand-in module with ``nn.Module`` takes its
    place in ``sys.modules`` (the real torch path is tested in the sentence-transformers group)."""

    class Module:
        def parameters(self):
            return iter([SimpleNamespace(device="cuda:3")])

    network = Module()
    assert device.model_device(SimpleNamespace(get_raw_model=lambda: network)) == "cpu"  # torch not seen
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(nn=SimpleNamespace(Module=Module)))
    assert device.model_device(SimpleNamespace(get_raw_model=lambda: network)) == "cuda:3"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (SimpleNamespace(device=0), "cuda:0"),  # transformers' integer convention
        (SimpleNamespace(device=-1), "cpu"),
        (SimpleNamespace(device=lambda: "cuda:0"), "cpu"),  # a method is not a device
        (SimpleNamespace(device=None, n_jobs=4), "cpu"),
        (pd.DataFrame({"device": ["cuda:9"]}), "cpu"),  # a column named device is not one either
    ],
)
def test_what_is_not_a_device_reports_cpu(raw, expected):
    assert device.model_device(SimpleNamespace(get_raw_model=lambda: raw)) == expected


def test_a_model_whose_inspection_fails_reports_cpu():
    def broken():
        raise RuntimeError("no raw model")

    class Exploding:
        @property
        def device(self):
            raise RuntimeError("CUDA error: device-side assert")

    assert device.model_device(SimpleNamespace(get_raw_model=broken)) == "cpu"
    assert device.model_device(SimpleNamespace(get_raw_model=lambda: Exploding())) == "cpu"
