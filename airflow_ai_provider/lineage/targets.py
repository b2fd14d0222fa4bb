"""What ``airflow-ai lineage`` is asked about: a predictions URI or a model version."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

from airflow_ai_provider.runtime.contract.model_reference import ModelReference


class LineageInputError(ValueError):
    """The target is not a predictions URI or model version that MLflow knows (one line)."""


@dataclass(frozen=True)
class OutputTarget:
    """Predictions: a part file or an output folder."""

    uri: str  # normalised: file:///abs/path or s3://bucket/key, no trailing slash


def normalize_uri(uri: str) -> str:
    """``file:///abs``, ``/abs``, ``relative`` or ``s3://b/k`` as ``file:///abs`` or ``s3://b/k``.

    :raises LineageInputError: an S3 URI without bucket, a relative ``file:`` URI or another scheme.
    """
    parsed = urlparse(uri.strip())
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise LineageInputError(f"S3 URI has no bucket: {uri}")
        return f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise LineageInputError(f"file URI must be absolute (file:///path): {uri}")
        return f"file://{os.path.abspath(parsed.path)}"
    if parsed.scheme and len(parsed.scheme) > 1:
        raise LineageInputError(
            f"unsupported URI scheme {parsed.scheme!r} in {uri}: give a file://, s3:// or local path "
            "of predictions, or a model version such as models:/churn/3"
        )
    return f"file://{os.path.abspath(uri.strip())}"


def same_inputs(first: str, second: str) -> bool:
    """Whether two comma-separated URI lists name the same inputs (any spelling, any order)."""
    try:
        return {normalize_uri(u) for u in first.split(",") if u} == {
            normalize_uri(u) for u in second.split(",") if u
        }
    except LineageInputError:
        return False


def parse_target(text: str) -> ModelReference | OutputTarget:
    """A model version (``models:/churn/3``, ``churn/3``, ``churn@champion``) or a predictions URI.

    ``churn/3`` is a model version unless a local path of that name exists.

    :raises LineageInputError: the text is empty, a model reference without version or alias, or a
        URI :func:`normalize_uri` refuses.
    """
    text = text.strip()
    if not text:
        raise LineageInputError("no target given: pass a predictions URI or a model version such as churn/3")
    try:
        model = ModelReference.parse(text, LineageInputError)
    except LineageInputError:
        model = None
    if model and (model.version or model.alias) and (text.startswith("models:/") or not os.path.exists(text)):
        return model
    if text.startswith("models:/"):
        raise LineageInputError(
            f"model reference {text!r} is not a model version: use models:/<name>/<version> or <name>@<alias>"
        )
    return OutputTarget(normalize_uri(text))
