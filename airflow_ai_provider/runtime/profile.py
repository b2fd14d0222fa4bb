"""Reference profile of a model's training data, the baseline the drift job compares new data with.

The training job builds one with :func:`build_profile`, logs it into its MLflow run as
:data:`PROFILE_ARTIFACT` (``client.log_dict(run_id, profile, PROFILE_ARTIFACT)``) and tags the model
version with :data:`PROFILE_TAG` = :func:`profile_uri` of that run. The drift job reads it back with
:func:`load_profile`.

Profile layout (version 1, plain JSON)::

    {"version": 1, "rows": n, "features": {
        "<numeric>": {"type": "numeric", "count", "missing", "mean", "std", "min", "max",
                      "quantiles": {"p01", "p05", "p25", "p50", "p75", "p95", "p99"},
                      "bin_edges": [...], "bin_fractions": [...], "sample": [...]},
        "<other>":   {"type": "categorical", "count", "missing",
                      "frequencies": {value: fraction, ..., "__other__": fraction}}}}

Bins: ``bin_edges`` are the distinct values of the column when it has at most ``bins`` of them,
else the deduplicated quantiles at 0, 1/bins, ..., (bins-1)/bins. Bin ``i`` holds the values in
``[bin_edges[i], bin_edges[i+1])``; the first bin also takes everything below ``bin_edges[0]`` and
the last everything from ``bin_edges[-1]`` up, so ``len(bin_fractions) == len(bin_edges)`` and any
new value falls in some bin (use :func:`bin_counts`). ``count`` is the number of non-missing values;
missing values (null, NaN, infinite) are counted in ``missing`` and left out of every statistic.
Categorical values are keyed by their string form; the 50 most frequent are kept and the rest of
the mass is ``__other__``.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_ai_provider.runtime import tracking
from airflow_ai_provider.runtime.contract.errors import JobInputError

PROFILE_VERSION = 1
PROFILE_ARTIFACT = "reference_profile.json"
#: Model version tag pointing at the profile: ``runs:/<run_id>/reference_profile.json``.
PROFILE_TAG = "ai.reference_profile"
OTHER = "__other__"
TOP_CATEGORIES = 50
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}


def profile_uri(run_id: str) -> str:
    """The ``runs:/`` URI of the profile logged in training run ``run_id`` (the tag value)."""
    return f"runs:/{run_id}/{PROFILE_ARTIFACT}"


def build_profile(
    data: pa.Table | pd.DataFrame,
    features: list[str],
    *,
    bins: int = 10,
    sample_size: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Profile ``features`` of ``data``: JSON-serialisable statistics, bins and a sample per feature.

    :param data: the training data (a pyarrow Table or a pandas DataFrame).
    :param features: the columns to profile (the model's inputs).
    :param bins: number of quantile bins per numeric feature (fewer when values repeat).
    :param sample_size: at most this many values of each numeric feature are kept, drawn with
        ``seed`` so the same data gives the same profile.
    :param seed: random seed of the sample.
    :raises JobInputError: a feature is not a column of ``data``, or ``bins`` < 2.
    """
    if bins < 2:
        raise JobInputError(f"profile bins must be >= 2, got {bins}")
    columns = list(data.column_names) if isinstance(data, pa.Table) else [str(c) for c in data.columns]
    missing = [name for name in features if name not in columns]
    if missing:
        raise JobInputError(
            f"cannot profile feature(s) {', '.join(missing)}: not in the data (columns: {', '.join(columns)})"
        )
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": _num_rows(data), "features": {}}
    for offset, name in enumerate(features):
        series = _series(data, name)
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            profile["features"][name] = _numeric(series, bins, sample_size, seed + offset)
        else:
            profile["features"][name] = _categorical(series)
    return profile


def bin_counts(edges: list[float], values: np.ndarray) -> np.ndarray:
    """Count ``values`` per profile bin (see the module docstring); missing values are skipped.

    :return: one integer count per edge.
    """
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if not edges:
        return np.zeros(0, dtype="int64")
    index = np.clip(np.searchsorted(np.asarray(edges, dtype="float64"), values, side="right") - 1, 0, None)
    return np.bincount(index, minlength=len(edges)).astype("int64")


def load_profile(client: Any, run_id: str) -> dict[str, Any] | None:
    """Download the reference profile logged in run ``run_id``.

    :param client: an ``mlflow.MlflowClient``.
    :return: the profile, or ``None`` when that run has no :data:`PROFILE_ARTIFACT`.
    :raises JobInputError: the artifact is not a profile this runtime understands, the run does not
        exist, or the credentials are refused.
    :raises JobServiceError: the tracking server or artifact store could not be reached.
    """
    what = f"cannot download {PROFILE_ARTIFACT} of run {run_id}"
    missing = f"MLflow run {run_id} does not exist: cannot read its {PROFILE_ARTIFACT}"
    with tracking.mlflow_errors(what, client.tracking_uri, missing):
        names = {item.path for item in client.list_artifacts(run_id)}
        if PROFILE_ARTIFACT not in names:
            return None
        with tempfile.TemporaryDirectory(prefix="ai-profile-") as scratch:
            path = client.download_artifacts(run_id, PROFILE_ARTIFACT, scratch)
            with open(path) as f:
                text = f.read()
    try:
        profile = json.loads(text)
    except json.JSONDecodeError as err:
        raise JobInputError(f"{profile_uri(run_id)} is not valid JSON ({err}): retrain the model") from None
    if not isinstance(profile, dict) or profile.get("version") != PROFILE_VERSION:
        version = profile.get("version") if isinstance(profile, dict) else None
        raise JobInputError(
            f"{profile_uri(run_id)} has profile version {version!r}, this runtime reads version "
            f"{PROFILE_VERSION}: use a runtime that matches the training job"
        )
    return profile


# --- internals -------------------------------------------------------------------------------------


def _num_rows(data: pa.Table | pd.DataFrame) -> int:
    return int(data.num_rows) if isinstance(data, pa.Table) else len(data)


def _series(data: pa.Table | pd.DataFrame, name: str) -> pd.Series:
    if isinstance(data, pa.Table):
        return data.column(name).to_pandas()
    return data[name]


def _numeric(series: pd.Series, bins: int, sample_size: int, seed: int) -> dict[str, Any]:
    raw = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    values = raw[np.isfinite(raw)]
    entry: dict[str, Any] = {
        "type": "numeric",
        "count": int(values.size),
        "missing": int(raw.size - values.size),
    }
    if values.size == 0:
        nothing = dict.fromkeys(("mean", "std", "min", "max"))
        return {**entry, **nothing, "quantiles": dict.fromkeys(QUANTILES), "bin_edges": [],
                "bin_fractions": [], "sample": []}  # fmt: skip
    distinct = np.unique(values)
    if distinct.size <= bins:
        edges = distinct
    else:
        edges = np.unique(np.quantile(values, np.arange(bins) / bins, method="inverted_cdf"))
    counts = bin_counts(edges.tolist(), values)
    if values.size > sample_size:
        sample = np.random.default_rng(seed).choice(values, size=sample_size, replace=False)
    else:
        sample = values
    return {
        **entry,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {key: float(np.quantile(values, q)) for key, q in QUANTILES.items()},
        "bin_edges": [float(edge) for edge in edges],
        "bin_fractions": [float(c) / values.size for c in counts],
        "sample": [float(v) for v in sample],
    }


def _categorical(series: pd.Series) -> dict[str, Any]:
    present = series.dropna()
    counts = present.astype(str).value_counts(sort=True)
    total = int(present.size)
    top = counts.iloc[:TOP_CATEGORIES]
    frequencies = {str(value): int(n) / total for value, n in top.items()} if total else {}
    if total:
        frequencies[OTHER] = int(counts.iloc[TOP_CATEGORIES:].sum()) / total
    return {
        "type": "categorical",
        "count": total,
        "missing": int(series.size - total),
        "frequencies": frequencies,
    }
