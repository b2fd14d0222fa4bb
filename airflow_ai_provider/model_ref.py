"""Parse the model references users write in DAGs: ``churn``, ``churn@champion``, ``churn/3``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_ai_provider.exceptions import AiProviderConfigError

_REFERENCE = re.compile(r"^(?:models:/)?(?P<name>[^@/\s]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))?$")


@dataclass(frozen=True)
class ModelSpecifier:
    """A registered model name with at most one of alias or version."""

    name: str
    alias: str | None = None
    version: str | None = None


def parse_model_reference(reference: str) -> ModelSpecifier:
    """Parse ``name``, ``name@alias``, ``name/version``, or the same behind ``models:/``."""
    match = _REFERENCE.match(str(reference).strip())
    if not match:
        raise AiProviderConfigError(
            f"model reference {reference!r} is not valid: use 'name', 'name@alias', 'name/version' "
            "or 'models:/name@alias'"
        )
    return ModelSpecifier(match["name"], match["alias"], match["version"])
