"""Small real text models for the embedding tests: a deterministic embedder that records what it
embeds, and registering a text model (one ``string`` column ``text`` in) in an MLflow registry."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from tests._support.churn_sample import mlflow_uris

DIM = 16
#: The environment variable naming the file a :class:`RecordingEmbedder` appends each text to.
LOG_VARIABLE = "EMBEDDED_TEXTS"


def text_vector(text: str) -> np.ndarray:
    """A deterministic float32 vector derived from the text alone."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=DIM).astype(np.float32)


class RecordingEmbedder(mlflow.pyfunc.PythonModel):
    """Embeds ``text`` with :func:`text_vector` and appends each text it embeds to ``$EMBEDDED_TEXTS``
    (when set), which is how the tests see what was predicted."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        texts = model_input["text"].tolist()
        path = os.environ.get(LOG_VARIABLE)
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.writelines(f"{text}\n" for text in texts)
        return np.vstack([text_vector(text) for text in texts])


def register_text_model(
    tracking_uri: str, experiment: str, name: str, model: mlflow.pyfunc.PythonModel
) -> str:
    """Log ``model`` with a one-``string``-column (``text``) signature and register it as ``name``;
    its reference ``name/<version>``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    with mlflow_uris(tracking_uri):
        mlflow.set_experiment(experiment)
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=ModelSignature(inputs=Schema([ColSpec("string", "text")])),
                registered_model_name=name,
                pip_requirements=["pandas", "numpy"],
            )
    return f"{name}/{info.registered_model_version}"
