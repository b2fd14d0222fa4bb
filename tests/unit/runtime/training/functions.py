"""Small training functions for the train job's tests, imported by the runtime as
``tests.unit.runtime.training.functions:<name>``: each breaks one rule of the training contract."""

from __future__ import annotations

from typing import Any

from airflow_ai_provider.runtime.training import TrainingContext

#: The module path of these functions, as a ``training_function`` names them.
FUNCTIONS = __name__


def must_not_run(ctx: TrainingContext) -> Any:
    raise AssertionError("a retry that found its version must not train again")


def returns_none(ctx: TrainingContext) -> None:
    return None


def returns_metrics_only(ctx: TrainingContext) -> dict[str, float]:
    return {"accuracy": 0.9, "roc_auc": 0.95}


def returns_a_string(ctx: TrainingContext) -> str:
    return "model"


def returns_bad_metrics(ctx: TrainingContext) -> tuple[Any, dict[str, Any]]:
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit(ctx.data[ctx.features], ctx.data[ctx.label])
    return model, {"accuracy": "high"}


def raises(ctx: TrainingContext) -> Any:
    raise ValueError("learning_rate must be positive,\ngot -1")


def python_model(ctx: TrainingContext) -> dict[str, Any]:
    import mlflow

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return [0] * len(model_input)

    return {"model": Constant(), "metrics": {"rows": float(len(ctx.data))}}
