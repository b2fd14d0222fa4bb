"""Retraining: run the user's training function on fresh data and register the model it returns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_ai_provider.config import ExecutionMode
from airflow_ai_provider.credentials import secret_value_kind
from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.arguments import JobArguments, uri_list
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.operators.task_run import task_instance_key
from airflow_ai_provider.runtime.contract import EventKey, Tag
from airflow_ai_provider.runtime.contract.params import TrainParams
from airflow_ai_provider.runtime.contract.spec import JobSpec

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.mlflow_runs import TaskRun


class RetrainModelOperator(JobArguments, AiJobOperator):
    """Train a model with your own function and register it as a new MLflow model version.

    The runtime reads the training data, calls ``training_function`` with a
    :class:`~airflow_ai_provider.runtime.training.TrainingContext` (``data``, ``table``, ``label``,
    ``features``, ``params``, ``log``, ``run_id``), logs the returned model (a scikit-learn estimator
    or an ``mlflow.pyfunc.PythonModel``) into this task's MLflow run with a signature, an input
    example and pinned requirements, stores the reference profile of the training data (for drift
    checks) and a model card, registers a version with lineage tags and the card as description, and
    points ``alias`` at it once it is ``READY``. A retry of the task reuses the version an earlier try
    registered instead of training again. GPUs, resources, node selectors and tolerations are
    ordinary :class:`KubernetesPodOperator` arguments (``container_resources``, ``node_selector``,
    ``tolerations``)::

        RetrainModelOperator(
            task_id="train",
            training_function="dag_templates.include.churn_training:train",
            input_uri="s3://data/customers/labelled/",
            label_column="churned",
            id_columns=["customer_id"],
            model_name="churn",
            hyperparameters={"max_iter": 200, "learning_rate": 0.05},
            intended_use="Rank customers by churn risk for retention offers.",
        )

    :param training_function: ``package.module:function``, importable in the image (kubernetes) or
        on the worker's ``PYTHONPATH`` (local). (templated)
    :param input_uri: training data: file, folder or glob of Parquet or CSV, local or ``s3://``; or
        a list. (templated)
    :param label_column: the label column. (templated)
    :param model_name: registered model to add a version to (created if missing). (templated)
    :param alias: alias pointed at the new version. (templated)
    :param feature_columns: the features; default every column but the label and ``id_columns``.
        A list, or one column name as a string. (templated)
    :param id_columns: columns that are neither features nor label: a list, or one column name as a
        string (a string with a comma is refused: pass a list). (templated)
    :param hyperparameters: passed to the function as ``ctx.params`` and logged as MLflow params.
        Named so because ``params`` is Airflow's own operator argument (DAG params). (templated)
    :param pip_requirements: the model's pip requirements; default pins of the installed mlflow,
        scikit-learn, pandas, numpy and cloudpickle. (templated)
    :param intended_use: what the model is for, shown in the model card. (templated)
    :param limitations: known limitations, shown in the model card. (templated)
    :param input_format: ``parquet`` or ``csv``; default from the file extension.

    The arguments are checked with the runtime's own check when the DAG is parsed (literal values)
    and again once templates render, before any MLflow run is booked. Before the training function
    runs, the runtime refuses a label column with missing values (null or NaN), naming the column
    and the count.
    """

    job_type = "train"
    job_params_class = TrainParams
    job_arguments = (
        "training_function",
        "label_column",
        "model_name",
        "alias",
        "feature_columns",
        "id_columns",
        "hyperparameters",
        "pip_requirements",
        "intended_use",
        "limitations",
        "input_format",
    )
    uri_arguments = ("input_uri",)
    retry_defaults: ClassVar[dict[str, Any]] = {"retries": 1, "retry_delay": timedelta(minutes=5)}
    #: Rendered by Jinja: the input and every job argument but the input format.
    template_fields: Sequence[str] = (
        *AiJobOperator.template_fields,
        "input_uri",
        *filter("input_format".__ne__, job_arguments),
    )

    def __init__(
        self,
        *,
        training_function: str,
        input_uri: str | list[str],
        label_column: str,
        model_name: str,
        alias: str = "challenger",
        feature_columns: list[str] | None = None,
        id_columns: list[str] | None = None,
        hyperparameters: dict[str, Any] | None = None,
        pip_requirements: list[str] | None = None,
        intended_use: str | None = None,
        limitations: str | None = None,
        input_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_job_arguments(
            training_function=training_function,
            input_uri=input_uri,
            label_column=label_column,
            model_name=model_name,
            alias=alias,
            feature_columns=feature_columns,
            id_columns=id_columns,
            hyperparameters=hyperparameters,
            pip_requirements=pip_requirements,
            intended_use=intended_use,
            limitations=limitations,
            input_format=input_format,
        )
        if isinstance(hyperparameters, dict):
            self._refuse_secret_hyperparameters(hyperparameters)

    def check_rendered_arguments(self, context: Context) -> None:
        super().check_rendered_arguments(context)
        self._refuse_secret_hyperparameters(self.job_params().get("hyperparameters") or {})

    def _refuse_secret_hyperparameters(self, hyperparameters: dict[str, Any]) -> None:
        """Hyperparameters become MLflow params that anyone with read access sees: no secrets."""
        for name, value in hyperparameters.items():
            kind = secret_value_kind(value)
            if kind:
                raise AiProviderConfigError(
                    f"{self.task_id}: hyperparameters[{name!r}] looks like {kind}; hyperparameters are "
                    "recorded as MLflow params: read secrets in the training function from its environment"
                )

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        ti = context["ti"]
        mode = self.resolved_execution_mode
        where = self.runtime_location(mode)
        params = {
            **self.job_params(),
            "training_key": task_instance_key(context),
            "dag_id": ti.dag_id,
            "dag_run_id": ti.run_id,
            "task_id": ti.task_id,
            "image": where if mode is ExecutionMode.KUBERNETES else f"local:{where}",
        }
        return JobSpec(
            job=self.job_type, inputs=uri_list(self.input_uri), mlflow=self.mlflow_ref(run), params=params
        )

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        model = result.get("model", {})
        details = result.get("details", {})
        return {
            Tag.MODEL_NAME: str(model.get("name", "")),
            Tag.MODEL_VERSION: str(model.get("version", "")),
            Tag.MODEL_ALIAS: str(model.get("alias", "")),
            Tag.MODEL_URI: str(details.get("model_uri", "")),
            Tag.TRAINING_DATA_DIGEST: str(details.get("training_data_digest", "")),
            "ai.reused_version": str(bool(details.get("reused"))).lower(),
        }

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        """Model name, version (also as ``model_version``, the key other model events use), alias, MLflow
        run, training data digest and rows."""
        details = result.get("details", {})
        return {
            EventKey.MODEL_NAME: details.get("model_name"),
            "version": details.get("version"),
            EventKey.MODEL_VERSION: details.get("version"),
            "alias": details.get("alias"),
            EventKey.MLFLOW_RUN_ID: run.run_id,
            "training_data_digest": details.get("training_data_digest"),
            "rows": details.get("rows"),
        }
