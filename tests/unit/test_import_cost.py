"""The DAG processor re-parses DAG files constantly: importing the provider must stay light."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = ("mlflow", "great_expectations", "pandas", "pyarrow", "sklearn", "boto3", "botocore")

_PROBE = """
import json, sys
{imports}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_modules_after(imports: str) -> set[str]:
    code = _PROBE.format(imports=imports, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_provider_and_template_imports_load_no_heavy_library():
    baseline = _heavy_modules_after(
        "import airflow.sdk\nfrom airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator"
    )
    ours = _heavy_modules_after(
        "import airflow_ai_provider\n"
        "from airflow_ai_provider import BatchInferenceOperator, MlflowHook, ExecutionMode\n"
        "import airflow_ai_provider.links, airflow_ai_provider.get_provider_info\n"
        "import dag_templates.churn_batch_inference, dag_templates.churn_retrain, dag_templates.churn_ingest, dag_templates.churn_drift_monitor"
    )
    assert ours <= baseline, f"provider imports pulled in {sorted(ours - baseline)}"
    assert "mlflow" not in ours
