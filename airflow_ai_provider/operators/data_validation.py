"""Data validation: check Parquet or CSV data against a Great Expectations suite before using it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_ai_provider.exceptions import AiProviderConfigError
from airflow_ai_provider.operators.arguments import JobArguments, is_templated, uri_list
from airflow_ai_provider.operators.base import AiJobOperator
from airflow_ai_provider.runtime.contract import EventKey, Tag
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import ValidateParams
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.contract.suite import parse_suite

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_ai_provider.mlflow_runs import TaskRun


class DataValidationOperator(JobArguments, AiJobOperator):
    """Validate data with a Great Expectations 1.x suite; fail the task when an expectation fails.

    The data is read batch by batch, so inputs larger than memory work (see
    ``airflow_ai_provider.runtime.validation.job`` for how each kind of expectation is judged across
    batches). Whatever the outcome, the full validation result (``validation_result.json``) and its
    HTML data docs page (``validation_report.html``) are stored in the task's MLflow run and in
    ``report_uri``. A failed validation fails the task without retry, with a one-line summary of the
    failed expectations; a passed one emits an Asset event on each outlet whose ``extra`` holds
    ``data_digest``, ``row_count``, ``suite``, ``input_uri``, ``mlflow_run_id`` and ``report_uri``.

    :param input_uri: file, folder or glob, local (``file://`` or path) or ``s3://``; or a list. (templated)
    :param suite_uri: JSON or YAML suite file (path, ``file://`` or ``s3://``), in Great Expectations'
        suite format or a plain list of expectations. (templated)
    :param expectations: the suite inline instead of ``suite_uri``: a list such as
        ``[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}}]``
        or a suite object ``{"name": ..., "expectations": [...]}``. (templated)
    :param suite_name: suite name in reports; default the suite's own name, else the file name.
        (templated)
    :param input_format: ``parquet`` or ``csv``; default from the file extension.
    :param batch_size: rows validated at a time; an input of at most this many rows is validated in
        one batch, where every expectation type works. Default: sized from the input's metadata so
        that a batch fits ``memory_budget_mb`` (an input that fits is one batch). (templated)
    :param memory_budget_mb: MiB one batch may take when ``batch_size`` is not given; default 1024, or a
        quarter of the memory available to the job if less.
    :param report_uri: folder for the reports; default ``<first input folder>/_validation/<suite>/``.
        (templated)
    :param max_examples: unexpected values kept per expectation in the result; default 5.
    :param scratch_dir: folder for the temporary files of uniqueness checks; default ``$TMPDIR``.
    """

    job_type = "validate"
    job_params_class = ValidateParams
    job_arguments = (
        "batch_size",
        "memory_budget_mb",
        "input_format",
        "report_uri",
        "max_examples",
        "scratch_dir",
    )
    uri_arguments = ("input_uri", "suite_uri", "report_uri")
    template_fields: Sequence[str] = (
        *AiJobOperator.template_fields,
        "input_uri",
        "suite_uri",
        "expectations",
        "suite_name",
        "report_uri",
        "batch_size",
    )

    def __init__(
        self,
        *,
        input_uri: str | list[str],
        suite_uri: str | None = None,
        expectations: list[dict[str, Any]] | dict[str, Any] | str | None = None,
        suite_name: str | None = None,
        input_format: str | None = None,
        batch_size: int | None = None,
        memory_budget_mb: int | None = None,
        report_uri: str | None = None,
        max_examples: int | None = None,
        scratch_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (suite_uri is None) == (expectations is None):
            raise AiProviderConfigError(
                f"{self.task_id}: give exactly one of suite_uri (a suite file) and expectations (a list)"
            )
        if isinstance(expectations, (list, dict)) and not is_templated(expectations):
            try:
                parse_suite(expectations, suite_name)  # structure errors surface when the DAG is parsed
            except JobInputError as err:
                raise AiProviderConfigError(f"{self.task_id}: {err}") from None
        self.set_job_arguments(
            input_uri=input_uri,
            suite_uri=suite_uri,
            expectations=expectations,
            suite_name=suite_name,
            input_format=input_format,
            batch_size=batch_size,
            memory_budget_mb=memory_budget_mb,
            report_uri=report_uri,
            max_examples=max_examples,
            scratch_dir=scratch_dir,
        )

    def build_job_spec(self, context: Context, run: TaskRun) -> JobSpec:
        params = self.job_params()
        if self.suite_uri is not None:
            params["suite_uri"] = self.suite_uri
        else:
            params["expectations"] = self.expectations
        if self.suite_name:
            params["suite_name"] = self.suite_name
        return JobSpec(
            job=self.job_type, inputs=uri_list(self.input_uri), mlflow=self.mlflow_ref(run), params=params
        )

    def result_tags(self, result: dict[str, Any]) -> dict[str, str]:
        details = result.get("details", {})
        return {
            Tag.SUITE: str(details.get("suite", "")),
            Tag.VALIDATION_SUCCESS: str(details.get("success", "")).lower(),
            Tag.INPUT_DIGEST: str(result.get("input_digest", "")),
            Tag.REPORT_URI: str(details.get("report_uri", "")),
        }

    def asset_event_extra(self, run: TaskRun, result: dict[str, Any]) -> dict[str, Any]:
        details = result.get("details", {})
        return {
            EventKey.INPUT_DIGEST: result.get("input_digest"),  # the key every data event carries
            "data_digest": result.get("input_digest"),
            EventKey.ROW_COUNT: result.get("rows_in", 0),
            "suite": details.get("suite"),
            "input_uri": ",".join(uri_list(self.input_uri)),
            EventKey.MLFLOW_RUN_ID: run.run_id,
            "report_uri": details.get("report_uri"),
        }
