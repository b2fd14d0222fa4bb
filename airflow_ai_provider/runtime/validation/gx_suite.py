"""The Great Expectations adapter: suites, configurations, results and one ephemeral validation context.

Everything that imports Great Expectations for the ``validate`` job lives here (imported lazily, so
reading a suite or planning it costs no Great Expectations import until a batch is validated).
"""

from __future__ import annotations

import json
from typing import Any

from airflow_ai_provider.runtime.contract.errors import JobInputError, one_line
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.contract.suite import ExpectationDef, SuiteDef

DATASOURCE = "airflow_ai_validate"
NO_EXCEPTION = {"raised_exception": False, "exception_traceback": None, "exception_message": None}


def expectation_class(kind: str) -> type:
    """The Great Expectations class implementing ``kind``; :class:`JobInputError` when unknown."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        return get_expectation_impl(kind)
    except ExpectationNotFoundError:
        raise JobInputError(
            f"unknown expectation type {kind!r}: use a Great Expectations 1.x expectation name "
            "such as expect_column_values_to_not_be_null"
        ) from None


def gx_configuration(expectation: ExpectationDef, position: int) -> Any:
    """The Great Expectations configuration of one expectation, with its arguments checked."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectation_class(expectation.type)
    try:
        config = ExpectationConfiguration(
            type=expectation.type,
            kwargs=dict(expectation.kwargs),
            meta={**expectation.meta, "_position": position},
        )
        config.to_domain_obj()
    except Exception as err:  # pydantic validation errors of each expectation class
        first = one_line(err)
        raise JobInputError(
            f"expectation #{position + 1} {expectation.label} has invalid kwargs {sorted(expectation.kwargs)}: {first}"
        ) from None
    return config


def to_gx_suite(suite: SuiteDef, positions: list[int] | None = None) -> Any:
    """A Great Expectations ``ExpectationSuite`` of the expectations at ``positions`` (default all).

    Each expectation's ``meta`` gets ``_position`` (its index in ``suite``) so results can be matched
    back. Unknown types and invalid arguments raise a :class:`JobInputError` naming the expectation.
    """
    from great_expectations.core import ExpectationSuite

    chosen = range(len(suite.expectations)) if positions is None else positions
    # Built in one go: adding one by one would replace an earlier expectation of the same type on
    # the same column (Great Expectations upserts by domain), silently dropping part of the suite.
    return ExpectationSuite(
        name=suite.name,
        expectations=[gx_configuration(suite.expectations[p], p).to_domain_obj() for p in chosen],
    )


def exception_info(message: str) -> dict[str, Any]:
    """The ``exception_info`` of a result that failed with ``message`` instead of being judged."""
    return {"raised_exception": True, "exception_traceback": None, "exception_message": message}


def evr(config: Any, success: bool, result: dict[str, Any], exception: dict[str, Any] | None = None) -> Any:
    """An ``ExpectationValidationResult`` for ``config`` (no exception unless ``exception`` is given)."""
    from great_expectations.core import ExpectationValidationResult

    return ExpectationValidationResult(
        success=success,
        expectation_config=config,
        result=result,
        exception_info=exception or dict(NO_EXCEPTION),
    )


class GxRunner:
    """An ephemeral Great Expectations context with one pandas dataframe batch definition.

    :param max_examples: unexpected values kept per expectation (``partial_unexpected_count``).
    """

    def __init__(self, max_examples: int) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.execution_engine import pandas_execution_engine

        # Great Expectations fingerprints every batch it loads (pandas' hash of every row, then md5),
        # twice per validation: about two thirds of its time on a 1M-row frame. The fingerprint only lands in
        # batch markers, which the job replaces with its own input digest, so it is skipped.
        pandas_execution_engine.HASH_THRESHOLD = 0
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas(DATASOURCE)
        self.definition = source.add_dataframe_asset("input").add_batch_definition_whole_dataframe("batch")
        self.result_format = {"result_format": "SUMMARY", "partial_unexpected_count": max_examples}
        self.version = gx.__version__

    def validate(self, frame: Any, gx_suite: Any) -> dict[int, Any]:
        """Validate one pandas batch; results by suite position."""
        batch = self.definition.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(gx_suite, result_format=self.result_format)
        return {int(r.expectation_config.meta["_position"]): r for r in outcome.results}


def suite_result(
    suite: SuiteDef,
    results: list[Any],
    version: str,
    spec: JobSpec,
    markers: dict[str, Any],
) -> Any:
    """The ``ExpectationSuiteValidationResult`` of ``results`` (in suite order) for the whole input.

    :param version: the Great Expectations version that judged them.
    :param markers: the batch markers: ``input_digest``, ``rows`` and ``batches``.
    """
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.util import convert_to_json_serializable

    for outcome in results:
        # numpy scalars break the HTML renderer; the JSON form is what the report shows anyway
        outcome.result = json.loads(json.dumps(convert_to_json_serializable(outcome.result or {})))
        outcome.expectation_config.meta.pop("_position", None)
        outcome.expectation_config.kwargs.pop("batch_id", None)
    passed = sum(1 for outcome in results if outcome.success)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results),
        },
        meta={
            "great_expectations_version": version,
            "run_id": {"run_name": spec.mlflow.run_id or "validate", "run_time": None},
            "batch_spec": {"input_uris": list(spec.inputs)},
            "batch_markers": markers,
            "active_batch_definition": {
                "datasource_name": DATASOURCE,
                "data_connector_name": "fluent",
                "data_asset_name": ",".join(spec.inputs),
                "batch_identifiers": {"input_digest": markers["input_digest"]},
            },
        },
    )


def render_html(result: Any) -> str:
    """Great Expectations' data docs page for one suite validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
