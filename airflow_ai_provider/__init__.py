"""Apache Airflow provider for reliable AI/ML jobs.

Names are exported lazily so that ``import airflow_ai_provider`` stays cheap for the DAG processor.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AiJobOperator": "airflow_ai_provider.operators.base",
    "BatchInferenceOperator": "airflow_ai_provider.operators.inference",
    "DataValidationOperator": "airflow_ai_provider.operators.data_validation",
    "DriftDetectionOperator": "airflow_ai_provider.operators.drift",
    "ModelApprovalOperator": "airflow_ai_provider.operators.promotion",
    "ModelValidationOperator": "airflow_ai_provider.operators.quality_gate",  # deprecated alias
    "PromoteModelOperator": "airflow_ai_provider.operators.promotion",
    "QualityGateOperator": "airflow_ai_provider.operators.quality_gate",
    "RetrainModelOperator": "airflow_ai_provider.operators.training",
    "RollbackModelOperator": "airflow_ai_provider.operators.promotion",
    "ExecutionMode": "airflow_ai_provider.config",
    "MlflowHook": "airflow_ai_provider.hooks.mlflow",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'airflow_ai_provider' has no attribute {name!r}")
