"""Asset URIs for registered models: ``mlflow-model://<name>`` and ``mlflow-model://<name>/drift``.

An asset stands for a model, not for one version: the version travels in each event's ``extra``
(``model_name``, ``model_version``, ``mlflow_run_id``), and downstream DAGs read it from
``triggering_asset_events`` instead of asking the registry what an alias says now.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from airflow.sdk import Asset

if TYPE_CHECKING:
    from urllib.parse import SplitResult

MODEL_SCHEME = "mlflow-model"
_FACETS = ("", "drift")
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalise an ``mlflow-model://`` URI, refusing what would make two assets of one model.

    Airflow calls this for every asset URI with the scheme (registered in the provider info).
    """
    name = uri.netloc
    facet = uri.path.strip("/")
    if not name or not _NAME.match(name):
        raise ValueError(f"asset URI {uri.geturl()!r} needs a registered model name: mlflow-model://<name>")
    if facet.isdigit():
        raise ValueError(
            f"asset URI {uri.geturl()!r} names a version: an asset is the model; put the version in the event extra"
        )
    if facet not in _FACETS:
        raise ValueError(f"asset URI {uri.geturl()!r}: path must be empty or /drift")
    if uri.query or uri.fragment:
        raise ValueError(f"asset URI {uri.geturl()!r} must not have a query or fragment")
    return uri._replace(path=f"/{facet}" if facet else "")


def model_asset(name: str) -> Asset:
    """The Asset that a promotion of model ``name`` updates."""
    return Asset(uri=f"{MODEL_SCHEME}://{name}", name=f"model:{name}")


def drift_asset(name: str) -> Asset:
    """The Asset that drift detected on model ``name`` updates (a retraining DAG can wait on it)."""
    return Asset(uri=f"{MODEL_SCHEME}://{name}/drift", name=f"drift:{name}")


def create_asset(*, name: str, facet: str = "") -> Asset:
    """Factory Airflow uses for the scheme: ``facet`` is ``""`` (the model) or ``"drift"``."""
    return drift_asset(name) if facet == "drift" else model_asset(name)
