"""Test session setup: an isolated Airflow home with a SQLite metadata DB, the server fixtures, and
markers from folders.

Airflow reads its configuration when first imported, so the environment is set here, before any
test module imports it. A test's marker comes from its folder (``tests/integration`` ->
``integration``, ``tests/podman`` -> ``podman``, ``tests/e2e`` -> ``e2e``; ``tests/unit`` none), so
``-m "not integration"`` and the like select by folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ai-provider-tests-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dag_templates")
# dag.test() runs only DAGs found in a bundle: the templates, and the DAGs the tests drive.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dag-templates",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(REPO_ROOT / "dag_templates")},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(REPO_ROOT / "tests" / "dags")},
        },
    ]
)
os.environ["AIRFLOW__CORE__PARALLELISM"] = "4"
os.environ["AI_TEMPLATES_DATA_ROOT"] = str(_AIRFLOW_HOME / "data")
for _name in ("MLFLOW_TRACKING_URI", "AIRFLOW__AI_PROVIDER__EXECUTION_MODE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)

pytest_plugins = ["tests._support.server_fixtures"]

FOLDER_MARKERS = ("integration", "podman", "e2e")
"""Folders under ``tests/`` whose tests carry the marker of the same name."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test after the folder it lives in (one of :data:`FOLDER_MARKERS`)."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        path = item.path.resolve()
        folder = path.relative_to(tests_dir).parts[0] if path.is_relative_to(tests_dir) else None
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session", autouse=True)
def _stop_warm_runtime_servers() -> Iterator[None]:
    """Local jobs fork from warm runtime servers (the default), which run in their own sessions and
    outlive the tests that started them: the session stops them when it ends."""
    yield
    from airflow_ai_provider.execution.local import default_scratch_root
    from tests._support.warm_servers import stop_servers_under

    stop_servers_under(default_scratch_root())


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """Create the SQLite metadata database once per test session."""
    from airflow.utils import db

    db.initdb()
    return airflow_home


@pytest.fixture(autouse=True)
def _restore_mlflow_globals():
    """Code that runs the runtime in-process sets MLflow's global URIs, active experiment and run;
    no test may see another's."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    saved_env = {name: os.environ.get(name) for name in names}
    yield
    import sys

    if "mlflow" in sys.modules:
        from mlflow.tracking import fluent
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None
        fluent._active_experiment_id = None
        while fluent.active_run() is not None:
            fluent.end_run()
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def mlflow_connection(monkeypatch, mlflow_server, airflow_db) -> str:
    """The ``mlflow_default`` connection, pointing at the test session's MLflow server."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "mlflow", "host": mlflow_server.url})
    )
    return mlflow_server.url


@pytest.fixture
def aws_connection(monkeypatch, s3_server) -> str:
    """An ``aws_test`` connection to the moto server, as a deployment would define it; the worker
    itself has no AWS credentials, so the runtime can only reach S3 through the connection."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    aws = {
        "conn_type": "aws",
        "login": s3_server.access_key,
        "password": s3_server.secret_key,
        "extra": {"region_name": s3_server.region, "endpoint_url": s3_server.endpoint_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", json.dumps(aws))
    return "aws_test"


_FLAKY_PYTHON = """#!/bin/bash
# First try: run the real job to the end, then report a retryable failure (as if the worker died
# right after the job's side effects). Later tries run the job normally.
if [ ! -e "{marker}" ]; then
    touch "{marker}"
    "{python}" "$@" || exit $?
    "{python}" -c 'import json, os
path = os.environ["AI_PROVIDER_RESULT_PATH"]
result = json.load(open(path))
result.update(status="failed", error="worker lost after the job finished", retryable=True)
json.dump(result, open(path, "w"))'
    exit 3
fi
exec "{python}" "$@"
"""


@pytest.fixture
def flaky_python(tmp_path) -> str:
    """An interpreter for ``python=`` whose first run completes the job and then reports a
    retryable failure, so the task's second try runs after the job's outputs already exist."""
    import sys

    script = tmp_path / "flaky-python"
    script.write_text(_FLAKY_PYTHON.format(marker=tmp_path / "tried", python=sys.executable))
    script.chmod(0o755)
    return str(script)
