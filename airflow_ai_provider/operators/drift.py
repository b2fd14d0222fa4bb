"""Drift detection: compare current data with the reference profile stored with a model version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowFailException

from airflow_ai_provider.exceptions import AiProviderConfigError, ModelReferenceError
from airflow_ai_provider.mlflow_registry import pin_model
from airflow_ai_provider.operators.arguments import JobArguments, uri_list
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.runtime.contract import EventKey
from airflow_ai_provider.runtime.contract.params import DriftParams
from airflow_ai_provider.runtime.contract.spec import JobSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.mlflow_runs import TaskRun


class DriftDetectionOperator(JobArguments, AiJobOperator):
    """Check whether current data still looks like the data a model version was trained on.

    The runtime job (``drift``) reads the reference profile that training logged with the model
    version (``reference_profile.json``), streams the current data and computes, per feature, the
    population stability index (PSI) over the reference bins and, for numeric features, a two-sample
    Kolmogorov-Smirnov test against the reference sample. A feature drifts when its PSI exceeds
    ``psi_threshold`` and (numeric features) its KS p-value is below ``ks_pvalue_threshold``; the data
    drifts when at least ``min_drifted_features`` features do. ``drift_report.json`` and a PSI plot
    go into the task's MLflow run. ``result["details"]`` holds ``drift``, ``drifted_features``,
    ``features`` (``psi``, ``ks_statistic``, ``ks_pvalue``, ``drifted`` per feature), ``max_psi``,
    ``model`` and ``thresholds``.

    **Retraining on drift.** Pass ``drift_asset``: an Asset event is emitted on it *only* when drift is
    found, so a retraining DAG can be scheduled on that asset. Airflow 3 gives every declared outlet
    Asset an event whenever the task succeeds, so the asset is not declared as an outlet; an
    :class:`~airflow.sdk.AssetAlias` is (``drift_alias``, default ``drift-events/<asset name>``), and
    on drift the task adds the event through it with
    ``context["outlet_events"][alias].add(drift_asset, extra=...)``. Airflow records that event on the
    asset (creating the asset if no DAG declared it yet) and schedules the DAGs that consume it. The
    event's ``extra``: ``model_name``, ``model_version``, ``mlflow_run_id``, ``drifted_features``,
    ``max_psi``, ``input_digest``, ``input_uri``, ``rows``. ::

        from airflow_ai_provider.assets import drift_asset

        DriftDetectionOperator(task_id="drift", model="churn@champion",
                               input_uri="s3://data/customers/{{ ds }}/", drift_asset=drift_asset("churn"))

        with DAG("retrain_churn", schedule=[drift_asset("churn")]): ...

    :param model: the model version whose training data is the reference: ``name@alias``,
        ``name/version``, ``name`` (latest) or ``models:/...``; pinned once per DAG run. (templated)
    :param input_uri: current data, Parquet or CSV, a file, folder or glob, local or ``s3://``; or a
        list. (templated)
    :param drift_asset: asset that gets an event when drift is found.
    :param drift_alias: name of the asset alias declared as the task's outlet for ``drift_asset``.
    :param psi_threshold: PSI above which a feature may drift (0.1 slight, 0.2 significant). (templated)
    :param ks_pvalue_threshold: KS p-value below which a numeric feature's shift is significant;
        ``None`` decides on PSI alone. (templated)
    :param min_drifted_features: how many features must drift for the data to drift. (templated)
    :param features: features to check: a list, or one name as a string; default every feature in
        the profile.
    :param sample_size: rows of the current data sampled for the KS test.
    :param input_format: ``parquet`` or ``csv``; default from the file extension.
    :param batch_size: rows per Arrow record batch while streaming the current data.
    """

    job_type = "drift"
    job_params_class = DriftParams
    job_arguments = (
        "psi_threshold",
        "ks_pvalue_threshold",
        "min_drifted_features",
        "features",
        "sample_size",
        "input_format",
        "batch_size",
    )
    uri_arguments = ("input_uri",)
    model_arguments = ("model",)
    template_fields: Sequence[str] = (
        *AiJobOperator.template_fields,
        "model",
        "input_uri",
        "psi_threshold",
        "ks_pvalue_threshold",
        "min_drifted_features",
    )

    def __init__(
        self,
        *,
        model: str,
        input_uri: str | list[str],
        drift_asset: Asset | None = None,
        drift_alias: str | None = None,
        psi_threshold: float | str = 0.2,
        ks_pvalue_threshold: float | str | None = 0.01,
        min_drifted_features: int | str = 1,
        features: list[str] | None = None,
        sample_size: int = 5000,
        input_format: str | None = None,
        batch_size: int = 65_536,
        **kwargs: Any,
    ) -> None:
        self.drift_asset = drift_asset
        self.drift_alias = None
        if drift_asset is not None:
            if not isinstance(drift_asset, Asset):
                raise AiProviderConfigError(
                    f"{kwargs.get('task_id', '?')}: drift_asset must be an airflow.sdk.Asset, got "
                    f"{type(drift_asset).__name__}"
                )
            self.drift_alias = AssetAlias(name=drift_alias or f"drift-events/{drift_asset.name}")
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), self.drift_alias]
        super().__init__(**kwargs)
        self.set_job_arguments(
            model=model,
            input_uri=input_uri,
            psi_threshold=psi_threshold,
            ks_pvalue_threshold=ks_pvalue_threshold,
            min_drifted_features=min_drifted_features,
            features=features,
            sample_size=sample_size,
            input_format=input_format,
            batch_size=batch_size,
        )

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        params = self.job_params()
        try:
            pinned = pin_model(self.mlflow_hook, self.model, run.parent_run_id)
        except ModelReferenceError as err:
            raise AirflowFailException(str(err)) from None  # a wrong reference does not heal by retrying
        self.log.info("Model %s pinned to version %s for this DAG run", self.model, pinned.version)
        return JobSpec(
            job=self.job_type,
            model=pinned,
            inputs=uri_list(self.input_uri),
            mlflow=self.mlflow_ref(run),
            params=params,
        )

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        details = result.get("details", {})
        model = details.get("model", {})
        return {
            "ai.drift": str(bool(details.get("drift"))).lower(),
            "ai.drifted_features": ",".join(details.get("drifted_features", [])),
            "ai.model_name": str(model.get("name", "")),
            "ai.model_version": str(model.get("version", "")),
            "ai.input_digest": str(result.get("input_digest", "")),
        }

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        return self._event_extra(run.run_id, result)

    def _event_extra(self, mlflow_run_id: str, result: dict[str, Any]) -> dict[str, Any]:
        details = result.get("details", {})
        model = details.get("model", {})
        return {
            EventKey.MODEL_NAME: model.get("name"),
            EventKey.MODEL_VERSION: model.get("version"),
            EventKey.MLFLOW_RUN_ID: mlflow_run_id,
            "drift": bool(details.get("drift")),
            "drifted_features": list(details.get("drifted_features", [])),
            "max_psi": details.get("max_psi"),
            EventKey.INPUT_DIGEST: result.get("input_digest"),
            "input_uri": ",".join(uri_list(self.input_uri)),
            "rows": result.get("rows_in"),
        }

    def on_job_success(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """On drift, emit the event on ``drift_asset`` through the task's asset alias."""
        details = result.get("details", {})
        drifted = details.get("drifted_features", [])
        if not details.get("drift"):
            self.log.info("No drift (max PSI %s)", details.get("max_psi"))
            return result
        self.log.warning("Drift in %d feature(s): %s", len(drifted), ", ".join(drifted))
        if self.drift_asset is not None and self.drift_alias is not None:
            extra = self._event_extra(str(result.get("mlflow_run_id", "")), result)
            context["outlet_events"][self.drift_alias].add(self.drift_asset, extra=extra)
            self.log.info("Asset event on %s through alias %s", self.drift_asset.name, self.drift_alias.name)
        return result
