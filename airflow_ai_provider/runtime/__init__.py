"""The job runtime: the execution plane that runs inside a pod or as a local subprocess.

``python -m airflow_ai_provider.runtime <job> --spec-json '<json>'`` reads a :class:`~.spec.JobSpec`,
runs the job and writes a :class:`~.spec.JobResult` as JSON. This package never imports Airflow, and
importing it is cheap: each job module loads its heavy libraries (pyarrow, MLflow, pandas) itself.
"""

from __future__ import annotations

from collections.abc import Callable

#: Where a job writes its progress lines (:func:`log_line` unless a caller captures them).
Log = Callable[[str], None]


def log_line(message: str) -> None:
    """Print one progress line; flushed at once so the task log shows it as it happens."""
    print(message, flush=True)
