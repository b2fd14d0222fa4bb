"""Bad job parameters and spec fields, per job: one line naming the parameter, never a raw exception.

Each case runs the job in-process (``<job>.run(spec)``) with an input that would otherwise work, so
the failure can only come from the parameter; the parameter checks come before any MLflow call or
output. The command line maps :class:`JobInputError` to exit code 2 and ``retryable: false``
(see ``test_cli_maps_bad_parameters_to_exit_code_2``).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_ai_provider.operators.data_validation import DataValidationOperator
from airflow_ai_provider.operators.drift import DriftDetectionOperator
from airflow_ai_provider.operators.inference import BatchInferenceOperator
from airflow_ai_provider.operators.quality_gate import QualityGateOperator
from airflow_ai_provider.operators.training import RetrainModelOperator
from airflow_ai_provider.runtime import drift, evaluate, infer
from airflow_ai_provider.runtime.contract.errors import JobInputError
from airflow_ai_provider.runtime.contract.params import DriftParams, EvaluateParams, InferParams, TrainParams
from airflow_ai_provider.runtime.contract.spec import JobSpec
from airflow_ai_provider.runtime.training import job as training_job
from airflow_ai_provider.runtime.validation import job as validate
from tests.unit.runtime.conftest import customers, write_parquet
from tests.unit.runtime.conftest import refused as refused_by_job
from tests.unit.runtime.test_main import last_stderr_line, read_result, run_cli

RUNTIME = Path(infer.__file__).parent
HUGE = 10**30
NOT_USED = "sqlite:////nonexistent/never-opened.db"  # parameter checks fail before MLflow is touched


def refused(module: Any, spec: JobSpec) -> str:
    """Run ``module.run(spec)``; it must raise a one-line, non-retryable :class:`JobInputError`."""
    return refused_by_job(module, spec, max_length=600)


def spec(job: str, inputs: str, **raw: Any) -> JobSpec:
    return JobSpec.from_dict(
        {"job": job, "inputs": [inputs], "mlflow": {"tracking_uri": NOT_USED, "run_id": "r"}, **raw}
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_parquet(tmp_path_factory.mktemp("params") / "in.parquet", customers(20)))


MODEL = {"name": "churn", "version": "1"}

INFER_CASES = [
    ({"batch_size": "abc"}, "batch_size must be a positive integer, got 'abc'"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": -5}, "batch_size must be a positive integer, got -5"),
    ({"batch_size": True}, "batch_size must be a positive integer, got True"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
    ({"batch_size": HUGE}, f"batch_size must be at most 2147483647, got {HUGE}"),
    ({"id_columns": 5}, "id_columns must be a list of column names, got 5"),
    ({"id_columns": [""]}, "id_columns must be a list of column names, got ['']"),
    (
        {"id_columns": "customer_id, age"},
        "id_columns is the single string 'customer_id, age': pass a list of column names, e.g. "
        "['customer_id', 'age'] (or ['customer_id, age'] if that is one column)",
    ),
    ({"extra_columns": "drop"}, "extra_columns must be one of error, ignore, got 'drop'"),
    ({"predict_proba": "maybe"}, "predict_proba must be true or false, got 'maybe'"),
    ({"check_unique_ids": "yes"}, "check_unique_ids must be true or false, got 'yes'"),
    (
        {"check_unique_ids": True, "id_columns": []},
        "check_unique_ids needs id_columns: name the columns that identify a row",
    ),
    ({"skops_trusted_types": 5}, "skops_trusted_types must be a list of strings, got 5"),
    ({"input_format": "json"}, "input_format must be one of parquet, csv, got 'json'"),
    ({"id_columns": ["proba_x"]}, "id column(s) 'proba_x' clash with prediction column names"),
    ({"batchsize": 10}, "unknown infer parameter(s): batchsize (did you mean batch_size?)"),
]


@pytest.mark.parametrize(("params", "message"), INFER_CASES, ids=[json.dumps(c[0]) for c in INFER_CASES])
def test_infer_parameter_is_named(data, tmp_path, params, message):
    raw = {
        "model": MODEL,
        "output": str(tmp_path / "out"),
        "params": {"id_columns": ["customer_id"], **params},
    }
    assert refused(infer, spec("infer", data, **raw)).startswith(message)
    assert not (tmp_path / "out").exists()


def test_missing_scratch_dir_is_named_before_anything_is_written(data, tmp_path):
    raw = {"model": MODEL, "output": str(tmp_path / "out"), "params": {"scratch_dir": str(tmp_path / "nope")}}
    assert refused(infer, spec("infer", data, **raw)) == (
        f"scratch_dir {tmp_path}/nope does not exist or is not a folder: create it or pass another"
    )
    assert not (tmp_path / "out").exists()


SPEC_CASES = [
    ({"shard": {"index": "a", "count": 2}}, "shard_index must be an integer >= 0, got 'a'"),
    ({"shard": {"index": 0, "count": "x"}}, "shard_count must be a positive integer, got 'x'"),
    ({"shard": {"index": 2, "count": 2}}, "shard_index 2 is out of range for shard_count 2"),
    ({"shard": {"index": 0, "count": HUGE}}, f"shard_count must be at most 2147483647, got {HUGE}"),
    ({"params": ["batch_size", 1]}, "job spec field 'params' must be an object, got list"),
    ({"model": {"name": "churn", "version": ["1"]}}, "model 'churn': version must be a registry version"),
    (
        {"model": {"name": "churn", "version": str(HUGE)}},
        f"model 'churn': version {HUGE} is not a registry version",
    ),
    ({"mlflow": {"tracking_uri": 5}}, "job spec field 'mlflow.tracking_uri' must be a URI, got 5"),
    ({"mlflow": {"tracking_uri": NOT_USED, "run_id": 7}}, "job spec field 'mlflow.run_id' must be a string"),
]


@pytest.mark.parametrize(("fields", "message"), SPEC_CASES, ids=[json.dumps(c[0]) for c in SPEC_CASES])
def test_bad_spec_field_is_named(data, tmp_path, fields, message):
    raw = {"job": "infer", "inputs": [data], "model": MODEL, "output": str(tmp_path / "out")}
    raw["mlflow"] = {"tracking_uri": NOT_USED}
    with pytest.raises(JobInputError) as caught:
        JobSpec.from_dict({**raw, **fields})
    assert str(caught.value).startswith(message)


TRAIN = {"training_function": "pkg.mod:train", "label_column": "churned", "model_name": "churn"}
TRAIN_CASES = [
    ({"registration_timeout_s": "abc"}, "registration_timeout_s must be a positive integer, got 'abc'"),
    ({"registration_timeout_s": HUGE}, f"registration_timeout_s must be at most 604800, got {HUGE}"),
    ({"feature_columns": "age,income"}, "feature_columns is the single string 'age,income': pass a list"),
    ({"hyperparameters": "abc"}, "hyperparameters must be a dict, got 'abc'"),
    ({"hyperparameters": "{'max_iter': }"}, "hyperparameters must be a dict, got the string"),
    ({"alias": "v2"}, "alias 'v2' is not valid"),
    ({"training_function": "train"}, "training_function must be 'package.module:function', got 'train'"),
    ({"model_name": "a/b"}, "model_name 'a/b' must not contain"),
    ({"label_column": ""}, "label_column must be a non-empty string, got ''"),
    ({"label_column": None}, "label_column is required: the column holding the label"),
    ({"feature_columns": ["churned", "age"]}, "label column 'churned' is also listed in feature_columns"),
    ({"pip_requirements": 3}, "pip_requirements must be a list of strings, got 3"),
]


@pytest.mark.parametrize(("params", "message"), TRAIN_CASES, ids=[json.dumps(c[0]) for c in TRAIN_CASES])
def test_train_parameter_is_named(data, params, message):
    raw = {"params": {k: v for k, v in {**TRAIN, **params}.items() if v is not None}}
    assert refused(training_job, spec("train", data, **raw)).startswith(message)


VALIDATE_CASES = [
    ({"batch_size": HUGE}, f"batch_size must be at most 2147483647, got {HUGE}"),
    ({"batch_size": "x"}, "batch_size must be a positive integer, got 'x'"),
    ({"max_examples": 0}, "max_examples must be a positive integer, got 0"),
    ({"report_uri": ""}, "report_uri must be a non-empty string, got ''"),
    ({"suite_name": 5}, "suite_name must be a string, got int"),
    (
        {"expectations": None, "batch_size": 10},
        "give exactly one of suite_uri (a suite file) and expectations (a list)",
    ),
    ({"expectations": "[{"}, "expectations is a string but not valid JSON"),
    (
        {
            "expectations": [
                {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": "a"}}
            ]
        },
        "expectation #1 expect_column_values_to_be_between(age) has invalid kwargs ['column', 'min_value']",
    ),  # fmt: skip
    (
        {"expectations": [{"type": "expect_colum_to_exist", "kwargs": {"column": "age"}}]},
        "unknown expectation type 'expect_colum_to_exist'",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("params", "message"), VALIDATE_CASES, ids=[str(c[0])[:60] for c in VALIDATE_CASES])
def test_validate_parameter_is_named(data, params, message):
    suite = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age"}}]
    merged = {k: v for k, v in {"expectations": suite, **params}.items() if v is not None}
    assert refused(validate, spec("validate", data, params=merged)).startswith(message)
    assert not (Path(data).parent / "_validation").exists()


EVALUATE_CASES = [
    ({"min_metrics": {"accuracy": "high"}}, "min_metrics['accuracy'] must be a number, got 'high'"),
    ({"min_metrics": {"accuracy": float("nan")}}, "min_metrics['accuracy'] must be a finite number, got nan"),
    ({"max_metrics": [0.5]}, "max_metrics must be a dict, got [0.5]"),
    ({"max_degradation": {"accuracy": -0.1}}, "max_degradation['accuracy'] must be >= 0, got -0.1"),
    ({"min_metrics": {"acc": 0.8}}, "min_metrics names metric(s) 'acc' that an evaluation does not compute"),
    (
        {"task_type": "regression", "min_metrics": {"accuracy": 0.8}},
        "min_metrics names metric(s) 'accuracy' that a regression evaluation does not compute: use rmse",
    ),
    ({"task_type": "classif"}, "task_type must be one of classification, regression, got 'classif'"),
    ({"label_column": None}, "label_column is required: the holdout column with the true label"),
]


@pytest.mark.parametrize(("params", "message"), EVALUATE_CASES, ids=[str(c[0]) for c in EVALUATE_CASES])
def test_evaluate_parameter_is_named(data, params, message):
    merged = {k: v for k, v in {"label_column": "churned", **params}.items() if v is not None}
    assert refused(evaluate, spec("evaluate", data, model=MODEL, params=merged)).startswith(message)


DRIFT_CASES = [
    ({"seed": "abc"}, "seed must be an integer >= 0, got 'abc'"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"psi_threshold": "nan"}, "psi_threshold must be a finite number, got 'nan'"),
    ({"psi_threshold": 0}, "psi_threshold must be > 0, got 0"),
    ({"psi_threshold": "high"}, "psi_threshold must be a number, got 'high'"),
    ({"ks_pvalue_threshold": 1.5}, "ks_pvalue_threshold must be < 1, got 1.5"),
    ({"min_drifted_features": 3, "features": ["age", "income"]}, "min_drifted_features 3 is more than the 2"),
    ({"features": "age;income"}, None),  # one column name: accepted here, refused by the profile later
    ({"features": "age,income"}, "features is the single string 'age,income': pass a list"),
    ({"sample_size": HUGE}, "sample_size must be at most 10000000"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
]


@pytest.mark.parametrize(("params", "message"), [c for c in DRIFT_CASES if c[1]], ids=str)
def test_drift_parameter_is_named(data, params, message):
    assert refused(drift, spec("drift", data, model=MODEL, params=params)).startswith(message)


def test_single_string_column_lists_are_one_column_and_numeric_strings_convert():
    assert InferParams.from_spec({"id_columns": "customer_id"}).id_columns == ["customer_id"]
    assert InferParams.from_spec({"id_columns": "['a', 'b']", "batch_size": "64"}).batch_size == 64
    assert InferParams.from_spec({"id_columns": "['a', 'b']"}).id_columns == ["a", "b"]
    assert TrainParams.from_spec({**TRAIN, "id_columns": "customer_id"}).id_columns == ["customer_id"]
    assert DriftParams.from_spec({"features": "age;income"}).features == ["age;income"]
    assert DriftParams.from_spec({"ks_pvalue_threshold": "None"}).ks_pvalue_threshold is None
    checked = EvaluateParams.from_spec({"label_column": "y", "min_metrics": {"accuracy": "0.8"}})
    assert checked.min_metrics == {"accuracy": 0.8}


def test_cli_maps_bad_parameters_to_exit_code_2(data, tmp_path):
    for fields in ({"params": {"batch_size": HUGE}}, {"shard": {"index": "a", "count": 2}}):
        raw = {"job": "infer", "inputs": [data], "model": MODEL, "output": str(tmp_path / "out")}
        raw["mlflow"] = {"tracking_uri": NOT_USED}
        result_path = tmp_path / "result.json"
        done = run_cli(
            ["infer", "--spec-json", json.dumps({**raw, **fields}), "--result-path", str(result_path)]
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        result = read_result(result_path)
        assert result["retryable"] is False and result["error_type"] == "JobInputError"
        assert last_stderr_line(done) == f"airflow-ai-runtime error: {result['error']}"
        assert not (tmp_path / "out").exists()


# --- every option a message names exists on the operator the user calls ------------------------------

#: Which operators run each runtime module's code (shared modules: every operator that reaches them).
#: Keys are paths below ``runtime/``, or globs for a package's modules.
OPERATORS = {
    "infer*.py": [BatchInferenceOperator],
    "vectors/*.py": [BatchInferenceOperator],
    "training/*.py": [RetrainModelOperator],
    "validation/*.py": [DataValidationOperator],
    "contract/suite.py": [DataValidationOperator],
    "evaluate.py": [QualityGateOperator],
    "scoring.py": [QualityGateOperator],
    "drift.py": [DriftDetectionOperator],
    "reports.py": [QualityGateOperator, DriftDetectionOperator],
    "profile.py": [RetrainModelOperator, DriftDetectionOperator],
    "models/*.py": [BatchInferenceOperator],  # the gate reads its columns with extra_columns="ignore"
    "storage/*.py": [
        BatchInferenceOperator,
        RetrainModelOperator,
        DataValidationOperator,
        QualityGateOperator,
        DriftDetectionOperator,
    ],
}
#: How a message tells the user to change an option: "set X", "pass X", "list them in X", "X=...",
#: "raise X", "drop X", "check X", "params.X".
OPTION = re.compile(
    r"\b(?:set|pass|list them in|raise|drop|check|lower|out of) ([a-z]+_[a-z_]+)\b|\b([a-z]+_[a-z_]+)="
    r"|\bparams\.([a-z_]+)"
)
#: Options that only the jobs reading them mention (a shared module's message about them reaches
#: only those operators' users).
SCOPED = {"scratch_dir": {BatchInferenceOperator, DataValidationOperator, QualityGateOperator}}


def message_texts(path: Path) -> list[str]:
    """The literal text of every string in ``path`` (f-string parts joined), docstrings excluded."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append(
                "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts.append(node.value)
    return texts


@pytest.mark.parametrize("module", sorted(OPERATORS))
def test_options_named_in_runtime_messages_exist_on_the_operators(module):
    named = {
        match.group(1) or match.group(2) or match.group(3)
        for path in sorted(RUNTIME.glob(module))
        for text in message_texts(path)
        for match in OPTION.finditer(text)
    }
    if module in (
        "infer*.py",
        "models/*.py",
        "storage/*.py",
        "training/*.py",
        "validation/*.py",
        "evaluate.py",
    ):
        assert named, f"no option found in {module}: the pattern is stale"
    for operator in OPERATORS[module]:
        arguments = set(inspect.signature(operator.__init__).parameters)
        relevant = {name for name in named if operator in SCOPED.get(name, {operator})}
        missing = sorted(name for name in relevant if name not in arguments)
        assert not missing, f"{module} names {missing}, which {operator.__name__} does not take"


#: Job parameters no operator argument sets: the operator fills them in, or only the CLI sets them.
NOT_ARGUMENTS = {
    "infer": {"predict_proba"},
    "train": {"training_key", "dag_id", "dag_run_id", "task_id", "image", "registration_timeout_s"},
    "validate": set(),
    "evaluate": set(),
    "drift": {"seed"},
}


@pytest.mark.parametrize(
    ("kind", "operator"),
    [
        (InferParams, BatchInferenceOperator),
        (TrainParams, RetrainModelOperator),
        (validate.ValidateParams, DataValidationOperator),
        (EvaluateParams, QualityGateOperator),
        (DriftParams, DriftDetectionOperator),
    ],
    ids=lambda value: getattr(value, "job", None) or value.__name__,
)
def test_every_job_parameter_a_user_sets_is_an_operator_argument_of_the_same_name(kind, operator):
    """The runtime's messages name parameters (``batch_size must be ...``): each is the operator's."""
    settable = {*kind.checks(), *kind.also_known} - NOT_ARGUMENTS[kind.job]
    arguments = set(inspect.signature(operator.__init__).parameters)
    assert sorted(settable - arguments) == []
    # and the operator passes each to the job under its own name
    assert operator.job_params_class is kind
    assert set(kind.checks()) - NOT_ARGUMENTS[kind.job] == set(operator.job_arguments)


def test_parameter_checks_import_nothing_heavy():
    """The operators import the parameter classes when a DAG is parsed: no pyarrow, pandas or MLflow."""
    import subprocess
    import sys

    code = (
        "import sys, airflow_ai_provider.runtime.contract.params, airflow_ai_provider.runtime.contract.columns; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'pandas', 'numpy', 'mlflow'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
