"""A cached scikit-learn model version loaded without importing MLflow: its MLmodel, signature and estimator.

A cache hit (:mod:`.cache`) needs no download, so nothing else of MLflow is needed either to predict
with the estimator: :func:`load_sklearn` reads ``MLmodel`` with YAML, deserializes the estimator as
``mlflow.sklearn`` does (skops with its trusted types, cloudpickle or pickle) and gives the input
signature as a read-only view with the attributes the runtime uses (:class:`ColumnSchema`). The
pyfunc's own ``predict`` (schema enforcement included) is MLflow's: it loads the real pyfunc model
from the same folder the first time it is called.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

_FORMATS = ("skops", "cloudpickle", "pickle")


@dataclass(frozen=True)
class ColumnSpec:
    """One input of a signature: name, type (``type.name`` is MLflow's type name, ``None`` for nested
    types) and whether it is required."""

    name: str | None
    type: Any
    required: bool = True


class ColumnSchema:
    """A model signature's inputs, read from ``MLmodel`` (the parts of ``mlflow.types.Schema`` the
    runtime reads: ``inputs``, :meth:`is_tensor_spec`, :meth:`has_input_names`)."""

    def __init__(self, raw: list[dict[str, Any]]) -> None:
        self.tensor = bool(raw) and raw[0].get("type") == "tensor"
        self.inputs = [
            ColumnSpec(
                entry.get("name"),
                SimpleNamespace(name=entry["type"] if isinstance(entry.get("type"), str) else None),
                bool(entry.get("required", True)),
            )
            for entry in raw
        ]

    def is_tensor_spec(self) -> bool:
        return self.tensor

    def has_input_names(self) -> bool:
        return bool(self.inputs) and self.inputs[0].name is not None


class Metadata:
    """What the runtime reads of a pyfunc model's metadata."""

    def __init__(self, mlmodel: dict[str, Any]) -> None:
        self.run_id = mlmodel.get("run_id")
        inputs = (mlmodel.get("signature") or {}).get("inputs")
        self.schema = ColumnSchema(json.loads(inputs)) if inputs else None

    def get_input_schema(self) -> ColumnSchema | None:
        return self.schema


class SklearnPyfunc:
    """The pyfunc model of a scikit-learn version in a local folder, estimator loaded without MLflow."""

    def __init__(self, mlmodel: dict[str, Any], estimator: Any, full_pyfunc: Callable[[], Any]) -> None:
        self.metadata = Metadata(mlmodel)
        self.estimator = estimator
        self._full_pyfunc = full_pyfunc
        self._pyfunc: Any = None
        #: The cache entry this model was loaded from, held (shared lock) while the model lives.
        self.cache_entry: Any = None

    def get_raw_model(self) -> Any:
        return self.estimator

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """MLflow's own pyfunc ``predict`` (its model loaded by ``full_pyfunc()`` on the first call)."""
        if self._pyfunc is None:
            self._pyfunc = self._full_pyfunc()
        return self._pyfunc.predict(data, params=params)


def read_mlmodel(folder: str) -> dict[str, Any] | None:
    """``folder``'s ``MLmodel`` as a dict; ``None`` when it is missing or not a mapping."""
    import yaml

    try:
        with open(os.path.join(folder, "MLmodel"), encoding="utf-8") as handle:
            mlmodel = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None
    return mlmodel if isinstance(mlmodel, dict) else None


def sklearn_conf(mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    """The sklearn flavor's configuration when this module can load the model, else ``None``.

    That is a model whose pyfunc loader is ``mlflow.sklearn``, saved as one file in a known format,
    in a process where MLflow allows deserialization (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``).
    """
    flavors = mlmodel.get("flavors") or {}
    conf = flavors.get("sklearn")
    pyfunc = flavors.get("python_function") or {}
    if not isinstance(conf, dict) or pyfunc.get("loader_module") != "mlflow.sklearn" or conf.get("code"):
        return None
    if conf.get("serialization_format", "pickle") not in _FORMATS or not conf.get("pickled_model"):
        return None
    if os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").strip().lower() not in ("true", "1"):
        return None
    return conf


def trusted_skops_types(conf: dict[str, Any], trusted: list[str]) -> list[str]:
    """The skops types a model is loaded with: those its sklearn flavor ``conf`` lists, and ``trusted``."""
    return sorted({*(conf.get("skops_trusted_types") or []), *trusted})


def load_sklearn(
    folder: str,
    mlmodel: dict[str, Any],
    conf: dict[str, Any],
    trusted: list[str],
    full_pyfunc: Callable[[], Any],
) -> SklearnPyfunc:
    """Deserialize the estimator of ``folder`` as ``mlflow.sklearn`` does; ``trusted`` are skops types
    trusted besides those the ``MLmodel`` lists; ``full_pyfunc()`` loads MLflow's pyfunc model."""
    path = os.path.join(folder, conf["pickled_model"])
    serialization = conf.get("serialization_format", "pickle")
    if serialization == "skops":
        import skops.io

        types = trusted_skops_types(conf, trusted)
        estimator = skops.io.load(path, trusted=types or None)
    else:
        with open(path, "rb") as handle:
            if serialization == "cloudpickle":
                import cloudpickle

                estimator = cloudpickle.load(handle)
            else:
                estimator = pickle.load(handle)  # the format the model was saved in
    return SklearnPyfunc(mlmodel, estimator, full_pyfunc)
