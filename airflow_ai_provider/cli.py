"""The ``airflow-ai`` console script.

``airflow-ai lineage <predictions-uri | model-version>`` prints where predictions or a model version
came from; ``airflow-ai lineage --downstream <model-version>`` what used a model version (see
:mod:`airflow_ai_provider.lineage`). Exit codes: 0 the chain is complete (``--downstream``: listed),
1 a hop is not recorded, 2 bad input (a malformed target, or one MLflow does not know), 3 MLflow
unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_ai_provider.runtime.contract.environment import scoped_environ

if TYPE_CHECKING:
    from airflow_ai_provider.hooks.mlflow import MlflowHook
    from airflow_ai_provider.lineage import DagRunLookup, Downstream, Lineage

EXIT_COMPLETE = 0
EXIT_INCOMPLETE = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3

#: stdout/stderr carry the chain and errors only. An unresponsive tracking server fails within
#: ``[ai_provider] service_timeout``, not after MLflow's minutes of retries.
_QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-ai", description="Tools for the Airflow AI provider.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lineage = commands.add_parser(
        "lineage",
        help="print where predictions or a model version came from",
        description=(
            "Print the chain predictions <- inference <- model version <- training <- training data <- "
            "data validation <- quality gate <- approval <- promotion, and the Airflow DAG runs behind "
            "it, from MLflow and Airflow records. Exit 0: complete; 1: a hop is not recorded; "
            "2: bad input; 3: MLflow unreachable."
        ),
    )
    lineage.add_argument(
        "target",
        help=(
            "a predictions part file or output folder (file://, s3:// or a local path), or a model "
            "version: models:/churn/3, churn/3 or churn@champion"
        ),
    )
    lineage.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI; default the mlflow_default connection, else MLFLOW_TRACKING_URI, "
        "else the embedded store under AIRFLOW_HOME",
    )
    lineage.add_argument(
        "--mlflow-conn-id", default="mlflow_default", help="Airflow connection of type mlflow"
    )
    lineage.add_argument(
        "--downstream",
        action="store_true",
        help="the reverse: list every inference output (rows, location), DAG run and Asset event (with "
        "the DAG runs it triggered) that used the model version TARGET (churn/3, models:/churn/3, or "
        "churn@champion: the version the alias points to now); exit 0 even when nothing used it",
    )
    lineage.add_argument("--json", action="store_true", help="print the result as one JSON object")
    lineage.add_argument(
        "--no-airflow", action="store_true", help="do not read DAG-run states from the Airflow database"
    )
    return parser


def _error(message: str) -> None:
    print(f"airflow-ai: error: {' '.join(message.split())}", file=sys.stderr)


def _lineage(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from airflow_ai_provider.config import service_timeout
    from airflow_ai_provider.credentials import scrub_text, scrub_uri
    from airflow_ai_provider.exceptions import AiProviderConfigError, MlflowUnavailableError
    from airflow_ai_provider.hooks.mlflow import MlflowHook, first_line
    from airflow_ai_provider.lineage import (
        LineageInputError,
        OutputTarget,
        airflow_dag_run_states,
        parse_target,
    )
    from airflow_ai_provider.runtime.contract.timeouts import ServiceBounds

    try:
        parsed = parse_target(args.target)  # a malformed target fails before anything is contacted
        if args.downstream and isinstance(parsed, OutputTarget):
            raise LineageInputError(
                f"--downstream takes a model version, not {args.target!r}: use <name>/<version>, "
                "models:/<name>/<version> or <name>@<alias>"
            )
    except LineageInputError as err:
        _error(str(err))
        return EXIT_BAD_INPUT
    states = (lambda dag_id, run_id: None) if args.no_airflow else airflow_dag_run_states()
    try:
        bounds = ServiceBounds(service_timeout())
    except AiProviderConfigError as err:
        _error(str(err))
        return EXIT_BAD_INPUT
    defaults = {
        key: value for key, value in {**bounds.mlflow_env(), **_QUIET_ENV}.items() if key not in os.environ
    }
    where = scrub_uri(args.tracking_uri) if args.tracking_uri else None
    try:
        hook = None if args.tracking_uri else MlflowHook(mlflow_conn_id=args.mlflow_conn_id)
        where = hook.tracking_uri if hook else where
        with scoped_environ(defaults):
            lineage = _trace(args, states, hook)
    except LineageInputError as err:
        _error(f"{err} (MLflow at {where})")
        return EXIT_BAD_INPUT
    except AiProviderConfigError as err:
        _error(str(err))
        return EXIT_BAD_INPUT
    except MlflowUnavailableError as err:
        _error(str(err))
        return EXIT_UNAVAILABLE
    except MlflowException as err:
        _error(f"MLflow at {where} failed: {scrub_text(first_line(err))}")
        return EXIT_UNAVAILABLE
    print(json.dumps(lineage.to_dict(), indent=2) if args.json else lineage.render(), flush=True)
    return EXIT_COMPLETE if lineage.complete else EXIT_INCOMPLETE


def _trace(args: argparse.Namespace, states: DagRunLookup, hook: MlflowHook | None) -> Lineage | Downstream:
    """The lineage of ``args.target`` (or, with ``--downstream``, what used it) through the MLflow
    connection's ``hook``, or ``--tracking-uri``."""
    from mlflow import MlflowClient

    from airflow_ai_provider import lineage

    def walk(client: MlflowClient) -> Lineage | Downstream:
        if not args.downstream:
            return lineage.trace(client, args.target, states)
        events = None if args.no_airflow else lineage.airflow_asset_events()
        return lineage.downstream(client, args.target, states, events)

    if hook is None:
        return walk(MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri))
    with hook.mlflow_client() as client:
        return walk(client)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``airflow-ai``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "lineage":
        return _lineage(args)
    return EXIT_BAD_INPUT  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
