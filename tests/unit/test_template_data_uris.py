"""The templates' Asset URIs and data URIs follow the data root: ``s3://`` on S3, ``file://`` for a
local folder, never ``file://s3://``."""

from __future__ import annotations

import importlib.util
import uuid
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT


def _fresh_template(name: str) -> ModuleType:
    """``dag_templates/<name>.py`` executed anew (it reads its environment when loaded)."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_{uuid.uuid4().hex}", REPO_ROOT / "dag_templates" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_uris(name: str) -> dict[str, str]:
    """Every data location a template names: its Assets, its params' defaults and its operators'."""
    module = _fresh_template(name)
    dag = module.dag
    condition = getattr(dag.timetable, "asset_condition", None)
    uris = {f"asset {asset.name}": asset.uri for asset in (condition.objects if condition else [])}
    for task in dag.tasks:
        for asset in [*task.outlets, *task.inlets]:
            if hasattr(asset, "uri"):  # an AssetAlias has none
                uris[f"{task.task_id} asset {asset.name}"] = asset.uri
        partial = getattr(task, "partial_kwargs", None) or {}  # a mapped operator's own arguments
        for field in ("input_uri", "output_uri", "holdout_uri"):
            value = partial[field] if field in partial else getattr(task, field, None)
            if isinstance(value, str):
                uris[f"{task.task_id}.{field}"] = value
    for param in ("input_uri", "output_root", "holdout_uri"):
        if param in dag.params:
            uris[f"param {param}"] = dag.params[param]
    return {key: uri for key, uri in uris.items() if "://" in uri and not uri.startswith("mlflow-model://")}


@pytest.mark.parametrize("name", ["churn_batch_inference", "churn_retrain", "churn_drift_monitor"])
@pytest.mark.parametrize(
    ("root", "prefix"),
    [("s3://data-bucket/ai", "s3://data-bucket/ai/"), ("/srv/ai-data", "file:///srv/ai-data/")],
)
def test_every_data_uri_of_a_template_is_under_its_data_root(name, root, prefix, monkeypatch):
    monkeypatch.setenv("AI_TEMPLATES_DATA_ROOT", root)
    uris = _data_uris(name)

    assert uris, name
    outside = {key: uri for key, uri in uris.items() if prefix not in uri}
    assert outside == {}, f"{name}: not under {prefix}"
    assert not [uri for uri in uris.values() if "file://s3" in uri]
