"""The runtime tests' fixtures (the session's SQLite registry, the MLflow environment reset per
module) for the runtime tests that also need the S3 server."""

from tests.unit.runtime.conftest import _restore_mlflow_env_per_module, log_lines, registry

__all__ = ["_restore_mlflow_env_per_module", "log_lines", "registry"]
