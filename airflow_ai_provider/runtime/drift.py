"""The ``drift`` job: compare current data with the reference profile of a model version.

The profile is the ``reference_profile.json`` the training job logged in the version's run (see
:mod:`airflow_ai_provider.runtime.profile`); the model version's ``ai.reference_profile`` tag, when
set, names the run to read it from, else the version's own ``run_id`` is used.

The current data (``spec.inputs``) is streamed in record batches, so memory stays bounded whatever
its size: per feature, the counts per reference bin (numeric) or per reference category accumulate
over the batches, and a uniform random sample of ``sample_size`` rows (bottom-k of random keys drawn
with ``seed``, so the same data gives the same sample) is kept for the Kolmogorov-Smirnov test.

Per feature:

- ``psi``: population stability index of the current distribution against the reference one, over
  the reference bins (numeric) or categories (categorical, unseen values counted as ``__other__``),
  both sides clipped to at least ``1e-4`` so that an empty bin does not give an infinite index;
- ``ks_statistic`` / ``ks_pvalue``: two-sample Kolmogorov-Smirnov test of the current sample against
  the reference sample (``scipy.stats.ks_2samp``; numeric features only, ``None`` otherwise).

Decision rule: a feature drifts when its PSI exceeds ``psi_threshold`` **and**, for a numeric
feature, the KS p-value is below ``ks_pvalue_threshold``. PSI says how much the distribution moved;
KS says the move is not sampling noise (a PSI over a few hundred rows is noisy, while a KS test over
large samples flags differences too small to matter, so neither decides alone). Set
``ks_pvalue_threshold`` to ``None`` to decide on PSI alone. A feature with no value at all in the
current data drifts. The data drifts when at least ``min_drifted_features`` features drift.

``drift_report.json`` (the result's ``details``) and ``drift_psi.png`` (PSI per feature against the
threshold) are logged into the task's MLflow run when there is one.

Parameters (``spec.params``, checked by :class:`~.params.DriftParams`): ``psi_threshold`` (default 0.2), ``ks_pvalue_threshold`` (default
0.01, or ``None``), ``min_drifted_features`` (default 1), ``features`` (default: every profiled
feature), ``sample_size`` (default 5000), ``seed`` (default 0), ``batch_size`` (default 65536),
``input_format``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_ai_provider.runtime import Log, log_line, reports, storage, tracking
from airflow_ai_provider.runtime.contract.columns import with_look_alikes
from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.params import DriftParams, check_min_drifted
from airflow_ai_provider.runtime.contract.spec import JobResult, JobSpec
from airflow_ai_provider.runtime.models.loading import registry_version
from airflow_ai_provider.runtime.profile import (
    OTHER,
    PROFILE_ARTIFACT,
    PROFILE_TAG,
    bin_counts,
    load_profile,
    profile_uri,
)

EPSILON = 1e-4
REPORT_ARTIFACT = "drift_report.json"
REPORT_PLOT = "drift_psi.png"


@dataclass
class _Accumulator:
    """What the batches add up to for the current data."""

    numeric: list[str]
    categorical: list[str]
    edges: dict[str, list[float]]
    sample_size: int
    rng: np.random.Generator
    rows: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    categories: dict[str, Counter] = field(default_factory=dict)
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    sample: np.ndarray | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        self.rows += n
        values = np.empty((n, len(self.numeric)), dtype="float64")
        for position, name in enumerate(self.numeric):
            column = batch.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
            values[:, position] = column
            finite = column[np.isfinite(column)]
            counts = bin_counts(self.edges[name], finite)
            self.counts[name] = self.counts[name] + counts if name in self.counts else counts
            self.present[name] = self.present.get(name, 0) + int(finite.size)
            self.sums[name] = self.sums.get(name, 0.0) + float(finite.sum())
        for name in self.categorical:
            column = batch.column(name)
            self.present[name] = self.present.get(name, 0) + n - column.null_count
            tally = self.categories.setdefault(name, Counter())
            try:
                as_text = column.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise JobInputError(
                    f"column {name!r} is {column.type}: the reference profile has it as categories, "
                    "which need values that read as text"
                ) from None
            for entry in pc.value_counts(as_text.drop_null()).to_pylist():
                tally[entry["values"]] += entry["counts"]
        keys = self.rng.random(n)
        if self.sample is None:
            self.keys, self.sample = keys, values
        else:
            self.keys, self.sample = np.concatenate([self.keys, keys]), np.vstack([self.sample, values])
        if self.keys.size > self.sample_size:
            keep = np.argpartition(self.keys, self.sample_size)[: self.sample_size]
            self.keys, self.sample = self.keys[keep], self.sample[keep]

    def sample_of(self, name: str) -> np.ndarray:
        column = self.sample[:, self.numeric.index(name)]
        return column[np.isfinite(column)]


def run(spec: JobSpec, log: Log = log_line) -> JobResult:
    """Compare the current data with the model version's reference profile; raise JobError on failure."""
    started = time.time()
    params = DriftParams.from_spec(spec.params)
    version, profile_run = _profile_run(spec)
    profile = load_profile(tracking.client(spec.mlflow), profile_run)
    if profile is None:
        raise JobInputError(
            f"model {spec.model.name} version {spec.model.version} has no reference profile "
            f"({PROFILE_ARTIFACT} in its training run): retrain it with RetrainModelOperator"
        )
    reference = _reference_features(profile, profile_run)
    features = params.features or list(reference)
    unprofiled = [name for name in features if name not in reference]
    if unprofiled:
        message = (
            f"feature(s) {', '.join(unprofiled)} of features are not in the reference profile of model "
            f"{spec.model.name} version {spec.model.version} (profiled: {', '.join(reference)})"
        )
        raise JobInputError(with_look_alikes(message, unprofiled, reference))
    check_min_drifted(params.min_drifted_features, features)
    data = storage.InputData.open(spec.inputs, params.input_format)
    where = ", ".join(spec.inputs)
    _check_schema(data.schema, features, reference, where)
    log(
        f"reference profile of {spec.model.name} version {spec.model.version}: {profile['rows']} rows, run {profile_run}"
    )

    numeric = [name for name in features if reference[name]["type"] == "numeric"]
    accumulator = _Accumulator(
        numeric=numeric,
        categorical=[name for name in features if name not in numeric],
        edges={name: reference[name]["bin_edges"] for name in numeric},
        sample_size=params.sample_size,
        rng=np.random.default_rng(params.seed),
    )
    stream_started = time.perf_counter()
    for batch in data.batches(features, params.batch_size):
        accumulator.add(batch)
    stream_s = time.perf_counter() - stream_started
    if accumulator.rows == 0:
        raise JobInputError(f"input has no rows: {where}")
    log(f"read {accumulator.rows} rows from {len(data.metas)} files in {stream_s:.1f}s")

    report = {
        name: _checked_compare(name, reference[name], accumulator, params, profile_run) for name in features
    }
    drifted = [name for name, entry in report.items() if entry["drifted"]]
    psis = [entry["psi"] for entry in report.values() if entry["psi"] is not None]
    max_psi = max(psis) if psis else 0.0
    drift = len(drifted) >= params.min_drifted_features
    for name, entry in report.items():
        shown = "-" if entry["psi"] is None else f"{entry['psi']:.3f}"
        ks = "" if entry["ks_pvalue"] is None else f", KS p {entry['ks_pvalue']:.2g}"
        log(f"  {name}: PSI {shown}{ks}{' DRIFTED' if entry['drifted'] else ''}")
    log(
        f"drift: {drift} ({len(drifted)} of {len(features)} features drifted: {', '.join(drifted) or 'none'})"
    )

    details = {
        "drift": drift,
        "drifted_features": drifted,
        "features": report,
        "max_psi": max_psi,
        "rows": accumulator.rows,
        "model": {
            "name": spec.model.name,
            "version": str(spec.model.version),
            "alias": spec.model.alias,
            "run_id": getattr(version, "run_id", None),
            "profile_uri": profile_uri(profile_run),
            "profile_rows": profile["rows"],
        },
        "thresholds": {
            "psi_threshold": params.psi_threshold,
            "ks_pvalue_threshold": params.ks_pvalue_threshold,
            "min_drifted_features": params.min_drifted_features,
        },
        "input_digest": data.digest,
    }
    reports.log_report(spec, {REPORT_ARTIFACT: details}, {REPORT_PLOT: lambda: psi_figure(details)}, log)

    model = {key: details["model"][key] for key in ("name", "version", "alias", "run_id")}
    model["uri"] = spec.model.uri
    metrics = {
        "max_psi": round(max_psi, 6),
        "drifted_features": len(drifted),
        **{
            f"psi_{name}": round(entry["psi"], 6)
            for name, entry in report.items()
            if entry["psi"] is not None
        },
        "stream_s": round(stream_s, 3),
    }
    return reports.whole_input_result(
        spec, data, started, accumulator.rows, model=model, details=details, metrics=metrics
    )


def _profile_run(spec: JobSpec) -> tuple[Any, str]:
    """The registry version of ``spec.model`` and the run holding its reference profile."""
    version = registry_version(spec.model, spec.mlflow)
    tagged = (getattr(version, "tags", None) or {}).get(PROFILE_TAG, "")
    if tagged.startswith("runs:/") and tagged.count("/") >= 2:
        return version, tagged[len("runs:/") :].split("/", 1)[0]
    if not version.run_id:
        raise JobInputError(
            f"model {spec.model.name} version {spec.model.version} has no reference profile "
            f"(no training run recorded): retrain it with RetrainModelOperator"
        )
    return version, version.run_id


_NUMERIC_KEYS = ("count", "bin_edges", "bin_fractions", "sample", "mean")
_CATEGORICAL_KEYS = ("count", "frequencies")


def _reference_features(profile: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The profile's features, checked to hold what the comparison reads."""
    where = profile_uri(run_id)
    features = profile.get("features")
    if not isinstance(features, dict) or not features:
        raise JobInputError(f"reference profile {where} lists no features: retrain the model to rebuild it")
    for name, entry in features.items():
        kind = entry.get("type") if isinstance(entry, dict) else None
        keys = {"numeric": _NUMERIC_KEYS, "categorical": _CATEGORICAL_KEYS}.get(kind)
        lacking = [key for key in keys or () if key not in entry]
        if keys is None or lacking:
            problem = f"lacks {', '.join(lacking)}" if keys else f"has type {kind!r}"
            raise JobInputError(
                f"reference profile {where} is malformed: feature {name!r} {problem}: retrain the model to "
                "rebuild it"
            )
    return features


def _check_schema(schema: pa.Schema, features: list[str], reference: dict[str, Any], where: str) -> None:
    missing = [name for name in features if name not in schema.names]
    problems = (
        [with_look_alikes(f"missing column(s) {', '.join(missing)}", missing, schema.names)]
        if missing
        else []
    )
    for name in features:
        if name in schema.names and reference[name]["type"] == "numeric":
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
                problems.append(f"column {name} is {kind}, the reference profile has numbers")
    if problems:
        raise JobInputError(f"input {where} does not match the reference profile: {'; '.join(problems)}")


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two distributions given as fractions over the same bins."""
    expected = np.clip(np.asarray(reference, dtype="float64"), EPSILON, None)
    actual = np.clip(np.asarray(current, dtype="float64"), EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _checked_compare(
    name: str, reference: dict[str, Any], acc: _Accumulator, params: DriftParams, run_id: str
) -> dict[str, Any]:
    """:func:`_compare`, with a profile entry whose values do not compute named as malformed."""
    try:
        return _compare(name, reference, acc, params)
    except (ValueError, TypeError, KeyError) as err:
        raise JobInputError(
            f"reference profile {profile_uri(run_id)} is malformed: feature {name!r} "
            f"({type(err).__name__}: {one_line(err)}): retrain the model to rebuild it"
        ) from None


def _compare(name: str, reference: dict[str, Any], acc: _Accumulator, params: DriftParams) -> dict[str, Any]:
    present = acc.present.get(name, 0)
    entry: dict[str, Any] = {
        "type": reference["type"],
        "psi": None,
        "ks_statistic": None,
        "ks_pvalue": None,
        "drifted": False,
        "current_count": present,
        "current_missing": acc.rows - present,
    }
    if reference["count"] == 0:
        return {**entry, "note": "no reference values: not compared"}
    if present == 0:
        return {**entry, "drifted": True, "note": "no values in the current data"}
    if reference["type"] == "numeric":
        from scipy.stats import ks_2samp

        entry["psi"] = psi(reference["bin_fractions"], acc.counts[name] / present)
        entry["reference_mean"] = reference["mean"]
        entry["current_mean"] = acc.sums[name] / present
        sample = acc.sample_of(name)
        if sample.size and reference["sample"]:
            test = ks_2samp(np.asarray(reference["sample"], dtype="float64"), sample)
            entry["ks_statistic"], entry["ks_pvalue"] = float(test.statistic), float(test.pvalue)
    else:
        frequencies = reference["frequencies"]
        current: Counter = Counter()
        for value, count in acc.categories.get(name, Counter()).items():
            current[value if value in frequencies and value != OTHER else OTHER] += count
        keys = list(frequencies)
        entry["psi"] = psi([frequencies[k] for k in keys], [current[k] / present for k in keys])
    confirmed = (
        params.ks_pvalue_threshold is None
        or entry["ks_pvalue"] is None
        or entry["ks_pvalue"] < params.ks_pvalue_threshold
    )
    entry["drifted"] = bool(entry["psi"] > params.psi_threshold and confirmed)
    return entry


def psi_figure(details: dict[str, Any]) -> Any:
    """Horizontal bars of PSI per feature (drifted ones in red) with the threshold as a dashed line."""
    from matplotlib.figure import Figure

    names = list(details["features"])
    values = [details["features"][name]["psi"] or 0.0 for name in names]
    colors = ["#c44e52" if details["features"][name]["drifted"] else "#8c8c8c" for name in names]
    figure = Figure(figsize=(7.0, 1.2 + 0.35 * len(names)), layout="constrained")
    ax = figure.subplots()
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    threshold = details["thresholds"]["psi_threshold"]
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("PSI")
    ax.legend(loc="lower right", fontsize=8)
    model = details["model"]
    verdict = "drift" if details["drift"] else "no drift"
    ax.set_title(f"{model['name']} v{model['version']}: {verdict} ({details['rows']} rows)", fontsize=10)
    return figure
