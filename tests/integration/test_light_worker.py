"""The Airflow task process of an AI operator never imports mlflow, pandas, pyarrow, scikit-learn or
Great Expectations: it books runs, pins models, sets tags and records results through MLflow's REST API.

Each case runs a real DAG with ``dag.test()`` (local execution mode, the session's real ``mlflow
server``) in a fresh Python process, which is the task's worker process; the runtime subprocess it
starts may import whatever the job needs. The fresh process then reports which of those libraries
its ``sys.modules`` holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_ai_provider.runtime.profile import PROFILE_ARTIFACT, build_profile
from tests._support.churn_sample import FEATURES, make_customers, train_and_register, write_customers

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("mlflow", "pandas", "pyarrow", "sklearn", "great_expectations")
MARKER = "LIGHT-WORKER-REPORT "
#: Interpreter start, Airflow imports, DAG parsing and the job itself, on a busy two-core machine.
WORKER_BOUND = 600

_WORKER = f"""
import importlib, json, sys
module, factory = sys.argv[1].split(":")
dag_run = getattr(importlib.import_module(module), factory)().test()
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print({MARKER!r} + json.dumps({{"state": str(dag_run.state), "loaded": loaded}}), flush=True)
"""


def _run_worker(dag: str, env: dict[str, str], script: str = _WORKER) -> dict[str, object]:
    """Run ``script`` in a fresh process (by default: ``dag``, ``module:factory``, with ``dag.test()``);
    its report."""
    done = subprocess.run(
        [sys.executable, "-c", script, dag],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_BOUND,
    )
    reports = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    assert done.returncode == 0 and reports, f"worker failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(reports[-1].removeprefix(MARKER))


@pytest.fixture(scope="module")
def champion(mlflow_server) -> str:
    """A churn model with versions ``champion`` and ``challenger`` (for the gate and promotion), each
    with the reference profile the drift job compares with."""
    from mlflow import MlflowClient

    name = f"light-{uuid.uuid4().hex[:8]}"
    profile = build_profile(make_customers(2_000, seed=0), list(FEATURES))  # for the drift job
    for alias, seed in (("champion", 0), ("challenger", 1)):
        model = train_and_register(mlflow_server.url, name, alias=alias, n_rows=2_000, max_iter=10, seed=seed)
        MlflowClient(tracking_uri=mlflow_server.url).log_dict(model["run_id"], profile, PROFILE_ARTIFACT)
    return name


CASES = {
    "inference": "tests.dags.ai_test_dags:retried_inference",
    "training": "tests.dags.training_dags:retried_training",
    "quality_gate": "tests.dags.evaluation_dags:evaluation_gate",
    "drift": "tests.dags.evaluation_dags:drift_check",
    "promotion": "tests.dags.promotion_dags:promote_then_check",
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_worker_process_of_an_ai_task_imports_no_heavy_library(
    case, champion, mlflow_connection, tmp_path, monkeypatch
):
    write_customers(tmp_path / "scoring", 2_000, seed=3)
    write_customers(tmp_path / "training", 1_000, seed=5, with_label=True)
    write_customers(tmp_path / "holdout", 1_000, seed=6, with_label=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "AI_TEST_DATA": str(tmp_path),
        "AI_TEST_MODEL": f"{champion}@champion" if case == "inference" else champion,
        "AI_TEST_MODEL_NAME": f"{champion}-retrained",
        "AI_TEST_CHALLENGER": f"{champion}@challenger",
        "AI_TEST_HOLDOUT": str(tmp_path / "holdout"),
        "AI_TEST_DRIFT_MODEL": f"{champion}@champion",
        "AI_TEST_CURRENT": str(tmp_path / "scoring"),
    }
    env.pop("AI_TEST_FAKE_PYTHON", None)
    report = _run_worker(CASES[case], env)
    assert report["state"] == "success", report
    assert report["loaded"] == []


def test_the_worker_process_of_a_data_validation_task_on_s3_imports_no_heavy_library(
    mlflow_connection, aws_connection, s3_server, s3_bucket
):
    suite = REPO_ROOT / "dag_templates" / "include" / "churn_expectations.json"
    s3_server.client().put_object(
        Bucket=s3_bucket, Key="suites/churn_expectations.json", Body=suite.read_bytes()
    )
    options = {"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": "testing"}
    write_customers(f"s3://{s3_bucket}/customers", 2_000, seed=11, storage_options=options)
    env = {**os.environ, "AI_TEST_BUCKET": s3_bucket, "AI_TEST_BATCH_SIZE": "1000"}
    report = _run_worker("tests.dags.validation_dags:s3_data_validation", env)
    assert report["state"] == "success", report
    assert report["loaded"] == []


_KUBERNETES_WORKER = f"""
import json, sys, tempfile, threading
from pathlib import Path
from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager
from tests.unit.operators import test_kubernetes_execution as k8s
fake = k8s.FakeKubernetes()
threading.Thread(target=fake.server.serve_forever, daemon=True).start()
PodManager.extract_xcom = lambda self, pod, **kwargs: fake.xcom(pod.metadata.name)
fake.result = k8s._validation_result()
result = k8s._operator(fake, Path(tempfile.mkdtemp())).execute(k8s._context())
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print({MARKER!r} + json.dumps({{"state": result["status"], "loaded": loaded}}), flush=True)
"""


def test_the_worker_process_of_a_task_in_kubernetes_mode_imports_no_heavy_library(mlflow_server):
    """Kubernetes mode through KubernetesPodOperator's own code against the loopback fake API server
    of ``tests/unit/operators/test_kubernetes_execution.py`` (no real cluster can run here), with the
    task's MLflow bookkeeping on the real ``mlflow server``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    env.pop("AIRFLOW_CONN_MLFLOW_DEFAULT", None)
    assert _run_worker("", env, _KUBERNETES_WORKER) == {"state": "success", "loaded": []}
